"""Coordination: collector containers share the channels/servers to watch.

Each container claims up to ``max_claims`` entities of its platform, live ones and
higher-priority ones (lower number) first, then by viewer count. Claims are atomic:
on PostgreSQL one transaction selects candidates ``FOR UPDATE SKIP LOCKED`` so
concurrent claimers never take the same row; on SQLite (one process) a lock
serialises claimers. A claim lasts 30 minutes unless extended by a heartbeat; a
container that has not checked in for 6 minutes (5 + 1 grace) loses its claims.
Every function takes ``now`` so tests control the clock.

The calls a container makes every round (``claim``, ``checkin``, ``release_offline``)
run parameterised SQL on the driver's cursor rather than pydal queries: building the
query objects and parsing whole rows (JSON columns included) cost far more than the
statements themselves. The statements read only the columns :func:`claim_view` needs
and return what they changed (``RETURNING``) instead of reading it again. They store
values as pydal does (booleans ``'T'``/``'F'``, timestamps to the second, ``updated_at``
set on every update), so rows written here and rows written through pydal agree.

On PostgreSQL each of those calls for a channel platform is one round trip: its
statements, prepared once per connection (parsing and planning them cost the server
more than running them), go out as one simple query in autocommit mode, which
PostgreSQL runs as one transaction (:func:`waddlebot.sql.execute_committed`), so there
is no ``BEGIN`` or ``COMMIT`` to wait for and the call has committed when it returns.
Whole-server claims (Discord, Slack) read what they lock before choosing servers and
keep a transaction of several round trips.
"""

from __future__ import annotations

import datetime
import threading

from waddlebot.contracts import PLATFORMS
from waddlebot.db import utcnow
from waddlebot.sql import Prepared, execute, execute_committed
from waddlebot.sql import sql_timestamp as stamp
from waddlebot.web import NotFound, ValidationError

CLAIM_TTL = datetime.timedelta(minutes=30)
CHECKIN_TIMEOUT = datetime.timedelta(minutes=6)
ERROR_THRESHOLD = 5
DEFAULT_MAX_CLAIMS = 5
PLATFORM_SCOPE = {"twitch": "channel", "discord": "server", "slack": "server", "console": "channel"}

_sqlite_lock = threading.Lock()

#: the columns of :func:`claim_view`, in the order :func:`_view` reads them (id first)
_VIEW_COLUMNS = (
    "id, entity_id, platform, server_id, channel_id, is_live, viewer_count, priority, "
    "status, claimed_by, claim_expires"
)
#: what giving a claim back writes (cleanup, release, release-offline)
_UNCLAIM = (
    "claimed_by = NULL, claimed_at = NULL, claim_expires = NULL, status = 'available', "
    "updated_at = %s"
)
#: a row any container may take: free and not taken out by errors
_CLAIMABLE = f"claimed_by IS NULL AND status <> 'error' AND error_count < {ERROR_THRESHOLD}"
#: the claim order: live first, then priority (lower first), then viewers
_CLAIM_ORDER = "is_live DESC, priority ASC, viewer_count DESC, id ASC"
#: a claim that ran out or whose container stopped checking in (parameters: now,
#: now - CHECKIN_TIMEOUT)
_STALE = "(claim_expires < %s OR last_checkin < %s)"
#: where release-offline keeps the ids it gave back until its claim statement reports them
_RELEASED_SETTING = "waddlebot.released"
#: what taking a claim writes (parameters: container, now, expiry, now, updated_at)
_TAKE = (
    "claimed_by = %s, claimed_at = %s, claim_expires = %s, last_checkin = %s, "
    "status = 'claimed', updated_at = %s"
)


def claim_view(row) -> dict:
    """The public shape of a coordination row (a pydal Row)."""
    return {
        "entity_id": row.entity_id,
        "platform": row.platform,
        "server_id": row.server_id,
        "channel_id": row.channel_id,
        "is_live": bool(row.is_live),
        "viewer_count": row.viewer_count or 0,
        "priority": row.priority,
        "status": row.status,
        "claimed_by": row.claimed_by,
        "claim_expires": row.claim_expires.isoformat() if row.claim_expires else None,
    }


def _view(values: tuple) -> dict:
    """:func:`claim_view` of a ``_VIEW_COLUMNS`` tuple read straight from the driver."""
    _id, entity_id, platform, server_id, channel_id, is_live, viewers, priority = values[:8]
    status, claimed_by, expires = values[8:]
    if isinstance(expires, str):  # SQLite may hand back the stored text
        expires = datetime.datetime.fromisoformat(expires)
    return {
        "entity_id": entity_id,
        "platform": platform,
        "server_id": server_id,
        "channel_id": channel_id,
        "is_live": str(is_live)[:1].lower() == "t",  # pydal's boolean: CHAR(1) 'T'/'F'
        "viewer_count": viewers or 0,
        "priority": priority,
        "status": status,
        "claimed_by": claimed_by,
        "claim_expires": expires.isoformat() if expires else None,
    }


def _views(rows: list[tuple]) -> list[dict]:
    """Views ordered by row id (the order every answer lists claims in)."""
    return [_view(r) for r in sorted(rows, key=lambda r: r[0])]


def _postgres(db) -> bool:
    return db._adapter.dbengine == "postgres"


def _execute_all(db, statements: list[tuple[str, tuple]]):
    """Run statements in order, in one round trip on PostgreSQL (psycopg2 sends them as
    one simple query; each still sees what the ones before it wrote); the cursor, holding
    the last one's result."""
    if not _postgres(db):  # sqlite3 runs one statement per call
        for sql, params in statements[:-1]:
            execute(db, sql, params)
        return execute(db, *statements[-1])
    return execute(
        db,
        ";\n".join(sql for sql, _params in statements),
        tuple(value for _sql, params in statements for value in params),
    )


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


def validate_platform(value) -> str:
    """A known platform name or a 400 naming ``platform``."""
    if value not in PLATFORMS:
        raise ValidationError(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    return value


def validate_container(value) -> str:
    """A container id or a 400 naming ``container_id``."""
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ValidationError("container_id must be a non-empty string", field="container_id")
    return value


def _cleanup_statement(now: datetime.datetime) -> tuple[Prepared, tuple]:
    return _CLEANUP, (stamp(utcnow()), stamp(now), stamp(now - CHECKIN_TIMEOUT))


def _candidates(db, platform: str, limit: int) -> list[int]:
    """Ids of claimable rows in claim order; on PostgreSQL locked, skipping locked ones."""
    lock = " FOR UPDATE SKIP LOCKED" if _postgres(db) else ""
    rows = execute(
        db,
        f"SELECT id FROM coordination WHERE platform = %s AND {_CLAIMABLE} "
        f"ORDER BY {_CLAIM_ORDER} LIMIT %s{lock}",
        (platform, limit),
    ).fetchall()
    return [r[0] for r in rows]


def _whole_servers(db, platform: str, ids: list[int], servers: int) -> list[int]:
    """Discord/Slack claim whole servers: every free channel of the first servers found."""
    picked = execute(
        db,
        f"SELECT server_id FROM coordination WHERE id IN ({_marks(ids)}) ORDER BY id",
        tuple(ids),
    ).fetchall()
    chosen: list[str] = []
    for (server_id,) in picked:
        if server_id not in chosen:
            chosen.append(server_id)
        if len(chosen) == servers:
            break
    rows = execute(
        db,
        f"SELECT id FROM coordination WHERE platform = %s AND server_id IN ({_marks(chosen)}) "
        f"AND {_CLAIMABLE}",
        (platform, *chosen),
    ).fetchall()
    return [r[0] for r in rows]


def _claim_sql(report_released: bool) -> str:
    """The channel claim as one statement (PostgreSQL): the container's claims
    (``held``), candidates locked ``FOR UPDATE SKIP LOCKED`` up to what it lacks
    (``free``) and their update (``took``). Rows: ``(kind, *_VIEW_COLUMNS)``, kind
    ``held``, or ``released`` for the rows :data:`_RELEASE_OFFLINE` gave back just before
    (``report_released``). Parameters: container, platform, platform, max_claims, then
    those of ``_TAKE``.
    """
    gone = released = ""
    if report_released:
        gone = (
            f"gone AS (SELECT {_VIEW_COLUMNS} FROM coordination WHERE id = ANY(string_to_array("
            f"nullif(current_setting('{_RELEASED_SETTING}'), ''), ',')::integer[])), "
        )
        released = " UNION ALL SELECT 'released', * FROM gone"
    return (
        f"WITH {gone}"
        f"held AS (SELECT {_VIEW_COLUMNS} FROM coordination "
        "WHERE claimed_by = %s AND platform = %s), "
        f"free AS MATERIALIZED (SELECT id FROM coordination "
        f"WHERE platform = %s AND {_CLAIMABLE} ORDER BY {_CLAIM_ORDER} "
        "LIMIT (SELECT greatest(%s - count(*), 0) FROM held) FOR UPDATE SKIP LOCKED), "
        f"took AS (UPDATE coordination SET {_TAKE} "
        # ANY(ARRAY(…)): a lookup by primary key; "IN (SELECT …)" is planned as a hash
        # join over the whole table (the planner cannot know that free is small)
        "WHERE id = ANY(ARRAY(SELECT id FROM free)) AND claimed_by IS NULL "
        f"RETURNING {_VIEW_COLUMNS}) "
        f"SELECT 'held', * FROM held UNION ALL SELECT 'held', * FROM took{released}"
    )


# The statements of a round, prepared once per connection on PostgreSQL.
#: expired claims and those of containers that stopped checking in are freed (parameters:
#: updated_at, now, now - CHECKIN_TIMEOUT)
_CLEANUP = Prepared(
    "wb_coordination_cleanup",
    f"UPDATE coordination SET {_UNCLAIM} WHERE claimed_by IS NOT NULL AND {_STALE}",
)
#: a container's check-in renews its claims (parameters: now, expiry, updated_at, container)
_CHECKIN = Prepared(
    "wb_coordination_checkin",
    "UPDATE coordination SET last_checkin = %s, claim_expires = %s, updated_at = %s "
    f"WHERE claimed_by = %s RETURNING {_VIEW_COLUMNS}",
)
#: a container gives back its offline claims; their ids wait in a transaction-local
#: setting for the claim statement after it to report (parameters: updated_at,
#: container, platform)
_RELEASE_OFFLINE = Prepared(
    "wb_coordination_release_offline",
    f"WITH off AS (UPDATE coordination SET {_UNCLAIM} WHERE claimed_by = %s "
    "AND platform = %s AND is_live = 'F' RETURNING id) "
    f"SELECT set_config('{_RELEASED_SETTING}', coalesce(string_agg(id::text, ','), ''), true) "
    "FROM off",
)
_CLAIM = Prepared("wb_coordination_claim", _claim_sql(False))
_CLAIM_REPORTING_RELEASED = Prepared("wb_coordination_claim_released", _claim_sql(True))


def _one_round_trip_claim(
    platform: str, container_id: str, max_claims: int, now: datetime.datetime, release: bool
) -> list[tuple[Prepared, tuple]]:
    """A channel claim on PostgreSQL: (``release``: give back the offline claims,) free
    expired claims so the claim sees them, claim."""
    statements = []
    if release:
        statements.append((_RELEASE_OFFLINE, (stamp(utcnow()), container_id, platform)))
    statements.append(_cleanup_statement(now))
    take = (container_id, stamp(now), stamp(now + CLAIM_TTL), stamp(now), stamp(utcnow()))
    statements.append(
        (
            _CLAIM_REPORTING_RELEASED if release else _CLAIM,
            (container_id, platform, platform, max_claims, *take),
        )
    )
    return statements


def _claim_rows(db, platform, container_id, max_claims, now, release) -> tuple[list, list]:
    """(held, released) rows of a one-round-trip channel claim (PostgreSQL)."""
    rows = execute_committed(
        db, _one_round_trip_claim(platform, container_id, max_claims, now, release)
    ).fetchall()
    held = [r[1:] for r in rows if r[0] == "held"]
    released = [r[1:] for r in rows if r[0] == "released"]
    return held, released


def claim(
    db,
    *,
    platform: str,
    container_id: str,
    max_claims: int = DEFAULT_MAX_CLAIMS,
    now: datetime.datetime | None = None,
) -> list[dict]:
    """Claim entities until the container holds ``max_claims``; returns what it holds."""
    now = now or utcnow()
    postgres = _postgres(db)
    by_server = PLATFORM_SCOPE.get(platform) == "server"
    if postgres and not by_server:
        return _views(_claim_rows(db, platform, container_id, max_claims, now, False)[0])
    lock = None if postgres else _sqlite_lock
    if lock:
        lock.acquire()
    try:
        statements = []
        if postgres and by_server:
            # A whole-server claim locks candidate rows of more servers than it takes
            # and then every channel of the chosen ones: concurrent server claimers
            # would skip each other's candidates (claiming nothing while servers are
            # free) or split a server. One server claimer per platform at a time
            # (released at commit); channel platforms keep SKIP LOCKED.
            statements.append(
                (
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"waddlebot:coordination:{platform}",),
                )
            )
        # expired claims are freed first, in this transaction (they commit with the claim)
        cleanup, cleanup_params = _cleanup_statement(now)
        statements.append((cleanup.sql, cleanup_params))
        statements.append(
            (
                f"SELECT {_VIEW_COLUMNS} FROM coordination WHERE claimed_by = %s AND platform = %s",
                (container_id, platform),
            )
        )
        held = _execute_all(db, statements).fetchall()
        count = len({r[3] for r in held}) if by_server else len(held)  # r[3]: server_id
        need = max(0, max_claims - count)
        if need:
            ids = _candidates(db, platform, need if not by_server else need * 20)
            if ids and by_server:
                ids = _whole_servers(db, platform, ids, need)
            if ids:
                take = (container_id, stamp(now), stamp(now + CLAIM_TTL), stamp(now))
                # the claimed_by guard keeps SQLite (no row locks) from taking a row twice
                held += execute(
                    db,
                    f"UPDATE coordination SET {_TAKE} "
                    f"WHERE id IN ({_marks(ids)}) AND claimed_by IS NULL "
                    f"RETURNING {_VIEW_COLUMNS}",
                    (*take, stamp(utcnow()), *ids),
                ).fetchall()
        db.commit()
    finally:
        if lock:
            lock.release()
    return _views(held)


def release(db, *, container_id: str, entity_ids: list[str] | None = None) -> int:
    """Give back some (``entity_ids``; an empty list releases none) or all claims."""
    if entity_ids is not None and not entity_ids:
        return 0
    sql = f"UPDATE coordination SET {_UNCLAIM} WHERE claimed_by = %s"
    params: tuple = (stamp(utcnow()), container_id)
    if entity_ids is not None:
        sql += f" AND entity_id IN ({_marks(entity_ids)})"
        params += tuple(entity_ids)
    return execute(db, sql, params).rowcount


def checkin(db, *, container_id: str, now: datetime.datetime | None = None) -> dict:
    """The 5-minute check-in: keeps the container's claims alive."""
    now = now or utcnow()
    renew = (stamp(now), stamp(now + CLAIM_TTL), stamp(utcnow()), container_id)
    # expired claims first, so a late check-in finds its claims gone
    statements = [_cleanup_statement(now), (_CHECKIN, renew)]
    if _postgres(db):
        renewed = execute_committed(db, statements).fetchall()
    else:
        renewed = _execute_all(db, [(p.sql, params) for p, params in statements]).fetchall()
    return {"renewed": len(renewed), "claims": _views(renewed)}


def heartbeat(db, *, container_id: str, now: datetime.datetime | None = None) -> dict:
    """Extend the container's claims by another claim period."""
    now = now or utcnow()
    extended = db(db.coordination.claimed_by == container_id).update(
        claim_expires=now + CLAIM_TTL, last_check=now
    )
    return {"extended": extended}


def update_status(
    db,
    *,
    entity_id: str,
    is_live: bool | None = None,
    viewer_count: int | None = None,
    now: datetime.datetime | None = None,
) -> dict:
    """Live status and viewers of one entity (collectors report them)."""
    now = now or utcnow()
    row = db(db.coordination.entity_id == entity_id).select().first()
    if row is None:
        raise NotFound(f"entity {entity_id!r} is not coordinated", field="entity_id")
    values: dict = {"last_activity": now}
    if is_live is not None:
        values["is_live"] = is_live
        if is_live and not row.is_live:
            values["live_since"] = now
        if not is_live:
            values["live_since"] = None
    if viewer_count is not None:
        values["viewer_count"] = viewer_count
    row.update_record(**values)
    return claim_view(row)


def report_error(db, *, entity_id: str, container_id: str | None, error: str) -> dict:
    """Count an error; past the threshold the entity is marked and skipped."""
    row = db(db.coordination.entity_id == entity_id).select().first()
    if row is None:
        raise NotFound(f"entity {entity_id!r} is not coordinated", field="entity_id")
    count = (row.error_count or 0) + 1
    values = {"error_count": count, "last_error": error[:2000]}
    if count >= ERROR_THRESHOLD:
        values.update(status="error", claimed_by=None, claim_expires=None)
    row.update_record(**values)
    return {"entity_id": entity_id, "error_count": count, "status": row.status}


def release_offline(
    db,
    *,
    container_id: str,
    platform: str,
    max_claims: int = DEFAULT_MAX_CLAIMS,
    now: datetime.datetime | None = None,
) -> dict:
    """Drop the container's offline entities and claim new ones in their place.

    Capacity is not left unused: when nothing else is free, an entity given back here
    is claimed again in the same call.
    """
    now = now or utcnow()
    if _postgres(db) and PLATFORM_SCOPE.get(platform) != "server":
        held, offline = _claim_rows(db, platform, container_id, max_claims, now, True)
        return {"released": [r[1] for r in sorted(offline)], "claimed": _views(held)}
    # one statement finds and frees them; on PostgreSQL it commits with the claim below
    offline = execute(
        db,
        f"UPDATE coordination SET {_UNCLAIM} WHERE claimed_by = %s AND platform = %s "
        "AND is_live = 'F' RETURNING id, entity_id",
        (stamp(utcnow()), container_id, platform),
    ).fetchall()
    if not _postgres(db):
        # SQLite: an open write transaction while waiting for the claim lock would
        # block the claimer holding it
        db.commit()
    released = [entity_id for _id, entity_id in sorted(offline)]
    claimed = claim(
        db,
        platform=platform,
        container_id=container_id,
        max_claims=max_claims,
        now=now,
    )
    return {"released": released, "claimed": claimed}


def populate(db, *, platform: str | None = None) -> dict:
    """Fill the coordination table from active ``servers`` rows (idempotent)."""
    query = db.servers.is_active == True
    if platform:
        query &= db.servers.platform == platform
    existing = {r.entity_id for r in db(db.coordination.id > 0).select(db.coordination.entity_id)}
    created = 0
    for server in db(query).select():
        entity_id = f"{server.platform}:{server.server_id}:{server.channel}"
        if entity_id in existing:
            continue
        db.coordination.insert(
            platform=server.platform,
            server_id=server.server_id,
            channel_id=server.channel,
            entity_id=entity_id,
            status="available",
            metadata={},
            config=server.config or {},
        )
        existing.add(entity_id)
        created += 1
    return {"created": created, "total": len(existing)}


def stats(db) -> dict:
    """Counts by platform and status, live entities and containers."""
    table = db.coordination
    count = table.id.count()
    by_status: dict = {}
    for row in db(table.id > 0).select(
        table.platform, table.status, count, groupby=table.platform | table.status
    ):
        by_status.setdefault(row.coordination.platform, {})[row.coordination.status] = row[count]
    containers = db(table.claimed_by != None).select(  # noqa: E711
        table.claimed_by, distinct=True
    )
    return {
        "by_platform": by_status,
        "live": db(table.is_live == True).count(),
        "claimed": db(table.claimed_by != None).count(),  # noqa: E711
        "containers": sorted(r.claimed_by for r in containers),
        "errored": db(table.status == "error").count(),
    }


def ensure_entity(db, *, platform: str, server_id: str, channel_id: str) -> None:
    """Make an activated channel claimable (no-op when already coordinated)."""
    entity_id = f"{platform}:{server_id}:{channel_id}"
    if db(db.coordination.entity_id == entity_id).isempty():
        db.coordination.insert(
            platform=platform,
            server_id=server_id,
            channel_id=channel_id,
            entity_id=entity_id,
            status="available",
            metadata={},
            config={},
        )
