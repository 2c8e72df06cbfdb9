#!/usr/bin/env bash
# Ensure the services the WaddleBot test suite needs are up:
#   - PostgreSQL primary on 127.0.0.1:5432 (Debian cluster), configured for streaming
#     replication, with the database `waddlebot_test`
#   - a streaming hot-standby replica on 127.0.0.1:5433 (pg_basebackup -R into
#     /var/lib/postgresql/waddlebot-replica, run with pg_ctl as the postgres user)
#   - Redis on 127.0.0.1:6379
#
# Idempotent: when everything is already up it only checks and prints one status line
# per service (stdout); progress and actions go to stderr.
#
# Usage:
#   scripts/services.sh                 ensure everything (default)
#   scripts/services.sh stop-replica    stop the replica (no-op if already stopped)
#   scripts/services.sh start-replica   start the replica (rebuilds it if it is unusable)
#   scripts/services.sh status          print the state of each service, change nothing
set -euo pipefail

PRIMARY_HOST=127.0.0.1
PRIMARY_PORT=5432
REPLICA_PORT=5433
REPLICA_DIR=/var/lib/postgresql/waddlebot-replica
REPLICA_SLOT=waddlebot_replica
REPLICA_NAME=waddlebot-replica
TEST_DB=waddlebot_test
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
PG_SOCKET_DIR=/var/run/postgresql
LOCK_FILE=${TMPDIR:-/tmp}/waddlebot-services.lock

export DEBIAN_FRONTEND=noninteractive
export PGCONNECT_TIMEOUT=5

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
status_line() { printf '%-20s %-16s %s\n' "$1" "$2" "$3"; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# wait_until SECONDS CMD...: poll CMD every 0.1s until it succeeds or SECONDS pass.
wait_until() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Run a command as the postgres OS user (from / so a private cwd does not cause warnings).
# fd 9 holds our lock; it is closed for children so daemons they start don't inherit it.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@") 9>&-
    elif [ "$(id -un)" = postgres ]; then
        (cd / && "$@") 9>&-
    elif command -v sudo >/dev/null 2>&1; then
        (cd / && sudo -n -u postgres -- "$@") 9>&-
    else
        die "need to run as root or postgres (or have sudo) to manage PostgreSQL"
    fi
}

APT_UPDATED=0
apt_install() {
    is_root || die "missing packages ($*) and not root: install them manually"
    command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -q >&2 9>&-
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    apt-get install -y -q "$@" >&2 9>&-
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: discovery
# ---------------------------------------------------------------------------------------------
PGVER=
PGBIN=
PGCLUSTER=

pg_installed() {
    command -v pg_lsclusters >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1 &&
        [ -n "$(ls /usr/lib/postgresql 2>/dev/null)" ]
}

# Sets PGVER/PGCLUSTER from the Debian cluster listening on PRIMARY_PORT, falling back to
# the newest version in /usr/lib/postgresql. Prints the cluster status (online/down/...).
cluster_line() { pg_lsclusters -h 2>/dev/null | awk -v p="$PRIMARY_PORT" '$3 == p { print; exit }'; }

detect_pg() {
    local install=${1:-install} line
    if ! pg_installed; then
        [ "$install" = install ] || die "PostgreSQL is not installed; run scripts/services.sh"
        log "PostgreSQL binaries missing; installing"
        apt_install postgresql
        pg_installed || die "PostgreSQL still missing after apt-get install"
    fi
    line=$(cluster_line)
    if [ -n "$line" ]; then
        PGVER=$(awk '{ print $1 }' <<<"$line")
        PGCLUSTER=$(awk '{ print $2 }' <<<"$line")
    else
        PGVER=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        PGCLUSTER=
    fi
    PGBIN=/usr/lib/postgresql/$PGVER/bin
    [ -x "$PGBIN/pg_ctl" ] || die "$PGBIN/pg_ctl not found"
}

# Admin SQL through the local socket as the postgres OS user (independent of TCP auth).
# psql_admin PORT [DB] -c SQL ...
psql_admin() {
    local port=$1
    shift
    as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$port" "$@"
}

primary_ready() { pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; }
replica_ready() { pg_isready -q -p "$REPLICA_PORT"; }

# The tests connect over TCP as postgres without a password.
tcp_probe() {
    "$PGBIN/psql" -X -A -t -q -w \
        "postgresql://postgres@$PRIMARY_HOST:$PRIMARY_PORT/postgres" -c 'select 1' >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: primary
# ---------------------------------------------------------------------------------------------
ensure_pg_socket_dir() {
    if [ ! -d "$PG_SOCKET_DIR" ] && is_root; then
        install -d -o postgres -g postgres -m 2775 "$PG_SOCKET_DIR"
    fi
}

start_primary() {
    local line status
    line=$(cluster_line)
    if [ -z "$line" ]; then
        is_root || die "no PostgreSQL cluster on port $PRIMARY_PORT and not root"
        PGCLUSTER=main
        if pg_lsclusters -h | awk -v v="$PGVER" '$1 == v && $2 == "main" { f = 1 } END { exit !f }'; then
            PGCLUSTER=waddlebot
        fi
        log "creating cluster $PGVER/$PGCLUSTER on port $PRIMARY_PORT"
        pg_createcluster "$PGVER" "$PGCLUSTER" --port "$PRIMARY_PORT" >&2 9>&-
        line=$(cluster_line)
    fi
    status=$(awk '{ print $4 }' <<<"$line")
    case $status in
    online*) ;;
    *)
        log "starting PostgreSQL cluster $PGVER/$PGCLUSTER"
        ensure_pg_socket_dir
        if is_root; then
            pg_ctlcluster --skip-systemctl-redirect "$PGVER" "$PGCLUSTER" start >&2 9>&-
        else
            as_pg pg_ctlcluster "$PGVER" "$PGCLUSTER" start >&2
        fi
        ;;
    esac
}

restart_primary() {
    [ -n "$PGCLUSTER" ] || die "cannot restart primary: unknown Debian cluster"
    log "restarting PostgreSQL cluster $PGVER/$PGCLUSTER"
    if is_root; then
        pg_ctlcluster --skip-systemctl-redirect "$PGVER" "$PGCLUSTER" restart >&2 9>&-
    else
        as_pg pg_ctlcluster "$PGVER" "$PGCLUSTER" restart >&2
    fi
    wait_until 60 primary_ready || die "primary did not come back after restart"
}

# Prepend lines to pg_hba.conf (first match wins, so they override stricter rules).
hba_prepend() {
    local hba=$1
    shift
    local tmp
    tmp=$(mktemp)
    {
        echo "# added by WaddleBot scripts/services.sh"
        printf '%s\n' "$@"
        as_pg cat "$hba"
    } >"$tmp"
    as_pg tee "$hba" <"$tmp" >/dev/null
    rm -f "$tmp"
}

configure_primary() {
    local wal_level senders slot_keep hba restart=0 reload=0
    local -a add=()
    wal_level=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show wal_level')
    senders=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show max_wal_senders')
    slot_keep=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show max_slot_wal_keep_size')
    if [ "$wal_level" = minimal ]; then
        log "setting wal_level = replica"
        psql_admin "$PRIMARY_PORT" -d postgres -c "alter system set wal_level = 'replica'"
        restart=1
    fi
    if [ "$senders" -eq 0 ]; then
        log "setting max_wal_senders = 10"
        psql_admin "$PRIMARY_PORT" -d postgres -c 'alter system set max_wal_senders = 10'
        restart=1
    fi
    # The replica uses a physical slot (so it can always catch up after stop-replica);
    # cap what an abandoned slot may retain.
    if [ "$slot_keep" = "-1" ]; then
        log "setting max_slot_wal_keep_size = 2GB"
        psql_admin "$PRIMARY_PORT" -d postgres -c "alter system set max_slot_wal_keep_size = '2GB'"
        reload=1
    fi

    hba=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show hba_file')
    if ! as_pg grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust([[:space:]]|$)' "$hba"; then
        add+=("host replication all 127.0.0.1/32 trust")
    fi
    if ! tcp_probe; then
        add+=("host all postgres 127.0.0.1/32 trust")
    fi
    if [ "${#add[@]}" -gt 0 ]; then
        log "adding to $hba: ${add[*]}"
        hba_prepend "$hba" "${add[@]}"
        reload=1
    fi

    if [ "$restart" -eq 1 ]; then
        restart_primary
    elif [ "$reload" -eq 1 ]; then
        psql_admin "$PRIMARY_PORT" -d postgres -c 'select pg_reload_conf()' >/dev/null
        sleep 0.2
    fi
    wait_until 10 tcp_probe || die "cannot connect to postgresql://postgres@$PRIMARY_HOST:$PRIMARY_PORT without a password"
}

ensure_test_db() {
    local exists
    exists=$(psql_admin "$PRIMARY_PORT" -d postgres -c "select 1 from pg_database where datname = '$TEST_DB'")
    if [ "$exists" != 1 ]; then
        log "creating database $TEST_DB"
        psql_admin "$PRIMARY_PORT" -d postgres -c "create database $TEST_DB owner postgres"
    fi
}

ensure_primary() {
    detect_pg install
    if ! primary_ready; then
        start_primary
        wait_until 60 primary_ready || die "primary not ready on $PRIMARY_HOST:$PRIMARY_PORT"
    fi
    [ "$(psql_admin "$PRIMARY_PORT" -d postgres -c 'select pg_is_in_recovery()')" = f ] ||
        die "server on port $PRIMARY_PORT is in recovery; expected a primary"
    configure_primary
    ensure_test_db
    status_line postgresql-primary "$PRIMARY_HOST:$PRIMARY_PORT" \
        "up (PostgreSQL $PGVER${PGCLUSTER:+/$PGCLUSTER}, database $TEST_DB)"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: replica
# ---------------------------------------------------------------------------------------------
replica_pg_ctl() { as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR" "$@"; }
replica_running() { as_pg test -f "$REPLICA_DIR/postmaster.pid" && replica_pg_ctl status >/dev/null 2>&1; }
replica_in_recovery() { [ "$(psql_admin "$REPLICA_PORT" -d postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" = t ]; }
replica_streaming() {
    [ "$(psql_admin "$PRIMARY_PORT" -d postgres -c \
        "select active from pg_replication_slots where slot_name = '$REPLICA_SLOT'" 2>/dev/null)" = t ]
}

# Prints why the replica data dir can't be used as-is (empty output: looks fine).
replica_problem() {
    local sysid_primary sysid_replica owner slot
    if ! [ -d "$REPLICA_DIR" ]; then
        echo "data dir missing"
        return
    fi
    owner=$(stat -c %U "$REPLICA_DIR")
    if [ "$owner" != postgres ]; then
        echo "data dir owned by $owner"
        return
    fi
    local f
    for f in PG_VERSION standby.signal postgresql.conf postgresql.auto.conf pg_hba.conf global/pg_control; do
        if ! as_pg test -f "$REPLICA_DIR/$f"; then
            echo "$f missing"
            return
        fi
    done
    if [ "$(as_pg cat "$REPLICA_DIR/PG_VERSION")" != "$PGVER" ]; then
        echo "PG_VERSION differs from primary ($PGVER)"
        return
    fi
    sysid_primary=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'select system_identifier from pg_control_system()')
    sysid_replica=$(as_pg "$PGBIN/pg_controldata" -D "$REPLICA_DIR" 2>/dev/null |
        awk -F: '/^Database system identifier/ { gsub(/[[:space:]]/, "", $2); print $2 }') || true
    if [ "$sysid_primary" != "$sysid_replica" ]; then
        echo "system identifier ${sysid_replica:-?} != primary $sysid_primary"
        return
    fi
    slot=$(psql_admin "$PRIMARY_PORT" -d postgres -c \
        "select coalesce(wal_status, 'none') from pg_replication_slots where slot_name = '$REPLICA_SLOT'")
    if [ -z "$slot" ]; then
        echo "replication slot $REPLICA_SLOT missing on primary"
        return
    fi
    if [ "$slot" = lost ]; then
        echo "replication slot $REPLICA_SLOT lost its WAL"
        return
    fi
}

start_replica_proc() {
    ensure_pg_socket_dir
    if replica_ready; then
        die "something else is listening on port $REPLICA_PORT (not $REPLICA_DIR)"
    fi
    log "starting replica ($REPLICA_DIR)"
    replica_pg_ctl -l "$REPLICA_DIR/replica.log" -w -t 60 -o "-p $REPLICA_PORT" start >/dev/null 2>&1
}

stop_replica_proc() {
    if replica_running; then
        log "stopping replica"
        replica_pg_ctl -m fast -w -t 60 stop >/dev/null
    fi
}

drop_replica_slot() {
    local i active
    for ((i = 0; i < 50; i++)); do
        active=$(psql_admin "$PRIMARY_PORT" -d postgres -c \
            "select active from pg_replication_slots where slot_name = '$REPLICA_SLOT'")
        case $active in
        "") return 0 ;;
        f)
            psql_admin "$PRIMARY_PORT" -d postgres -c "select pg_drop_replication_slot('$REPLICA_SLOT')" \
                >/dev/null 2>&1 || true
            ;;
        t)
            psql_admin "$PRIMARY_PORT" -d postgres -c "select pg_terminate_backend(active_pid)
                from pg_replication_slots where slot_name = '$REPLICA_SLOT' and active" >/dev/null 2>&1 || true
            sleep 0.1
            ;;
        esac
    done
    die "could not drop replication slot $REPLICA_SLOT"
}

rebuild_replica() {
    log "rebuilding replica: $1"
    if as_pg test -f "$REPLICA_DIR/postmaster.pid" 2>/dev/null; then
        replica_pg_ctl -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if is_root; then
        rm -rf "$REPLICA_DIR"
        install -d -o postgres -g postgres -m 700 "$REPLICA_DIR"
    else
        as_pg rm -rf "$REPLICA_DIR"
        as_pg install -d -m 700 "$REPLICA_DIR"
    fi
    drop_replica_slot

    local settings hba ident
    log "pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT"
    as_pg "$PGBIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -w \
        -D "$REPLICA_DIR" -R -X stream -C -S "$REPLICA_SLOT" -c fast >&2

    # Debian keeps postgresql.conf/pg_hba.conf outside the data dir, so the copy has none.
    # Settings a hot standby needs >= the primary's values are copied from the primary.
    settings=$(psql_admin "$PRIMARY_PORT" -d postgres -c "select name || ' = ' || setting from pg_settings
        where name in ('max_connections', 'max_worker_processes', 'max_wal_senders',
                       'max_prepared_transactions', 'max_locks_per_transaction') order by name")
    hba=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show hba_file')
    ident=$(psql_admin "$PRIMARY_PORT" -d postgres -c 'show ident_file')
    {
        echo "# WaddleBot test read replica; written by scripts/services.sh"
        echo "port = $REPLICA_PORT"
        echo "listen_addresses = '$PRIMARY_HOST'"
        echo "unix_socket_directories = '$PG_SOCKET_DIR'"
        echo "cluster_name = '$REPLICA_NAME'"
        echo "hot_standby = on"
        echo "hot_standby_feedback = on"
        echo "logging_collector = off"
        echo "$settings"
    } | as_pg tee "$REPLICA_DIR/postgresql.conf" >/dev/null
    as_pg cat "$hba" | as_pg tee "$REPLICA_DIR/pg_hba.conf" >/dev/null
    as_pg cat "$ident" | as_pg tee "$REPLICA_DIR/pg_ident.conf" >/dev/null
    as_pg chmod 700 "$REPLICA_DIR"
    start_replica_proc || {
        as_pg tail -n 20 "$REPLICA_DIR/replica.log" >&2 || true
        die "freshly built replica failed to start"
    }
}

# Verifies a running replica: accepting connections, in recovery, streaming. Prints why not.
replica_verify() {
    if ! wait_until 30 replica_ready; then
        echo "not accepting connections on port $REPLICA_PORT"
        return
    fi
    if ! replica_in_recovery; then
        echo "not in recovery (promoted?)"
        return
    fi
    if ! wait_until 15 replica_streaming; then
        echo "not streaming from the primary"
        return
    fi
}

ensure_replica() {
    local problem rebuilt=0
    problem=$(replica_problem)
    if [ -n "$problem" ]; then
        rebuild_replica "$problem"
        rebuilt=1
    elif ! replica_running; then
        if ! start_replica_proc; then
            rebuild_replica "failed to start"
            rebuilt=1
        fi
    fi
    problem=$(replica_verify)
    if [ -n "$problem" ]; then
        [ "$rebuilt" -eq 0 ] || {
            as_pg tail -n 20 "$REPLICA_DIR/replica.log" >&2 || true
            die "replica $problem after rebuild"
        }
        rebuild_replica "$problem"
        problem=$(replica_verify)
        [ -z "$problem" ] || {
            as_pg tail -n 20 "$REPLICA_DIR/replica.log" >&2 || true
            die "replica $problem after rebuild"
        }
    fi
    status_line postgresql-replica "$PRIMARY_HOST:$REPLICA_PORT" \
        "up (hot standby, in recovery, streaming via slot $REPLICA_SLOT; $REPLICA_DIR)"
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        log "redis-server missing; installing"
        apt_install redis-server
    fi
    if ! redis_up; then
        log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
        mkdir -p /var/log/redis /var/lib/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 9>&-
        wait_until 10 redis_up || die "redis did not answer PING on $REDIS_HOST:$REDIS_PORT"
    fi
    status_line redis "$REDIS_HOST:$REDIS_PORT" "up (PONG)"
}

# ---------------------------------------------------------------------------------------------
# status (read-only)
# ---------------------------------------------------------------------------------------------
show_status() {
    local st
    if primary_ready 2>/dev/null; then st=up; else st=down; fi
    status_line postgresql-primary "$PRIMARY_HOST:$PRIMARY_PORT" "$st"
    if replica_ready 2>/dev/null; then
        if pg_installed && detect_pg no-install && replica_in_recovery; then st="up (in recovery)"; else st=up; fi
    else
        st=stopped
    fi
    status_line postgresql-replica "$PRIMARY_HOST:$REPLICA_PORT" "$st"
    if redis_up; then st=up; else st=down; fi
    status_line redis "$REDIS_HOST:$REDIS_PORT" "$st"
}

# ---------------------------------------------------------------------------------------------
main() {
    local cmd=${1:-up}
    # Serialize concurrent invocations (e.g. parallel tests toggling the replica).
    if [ "$cmd" != status ] && command -v flock >/dev/null 2>&1; then
        exec 9>>"$LOCK_FILE"
        flock -w 300 9 || die "could not lock $LOCK_FILE"
    fi
    case $cmd in
    up | ensure | all)
        ensure_primary
        ensure_replica
        ensure_redis
        ;;
    stop-replica)
        detect_pg no-install
        stop_replica_proc
        status_line postgresql-replica "$PRIMARY_HOST:$REPLICA_PORT" stopped
        ;;
    start-replica)
        detect_pg no-install
        wait_until 30 primary_ready || die "primary is down; run scripts/services.sh first"
        ensure_replica
        ;;
    status)
        show_status
        ;;
    -h | --help | help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        die "unknown command: $cmd (use: up, stop-replica, start-replica, status)"
        ;;
    esac
}

main "$@"
