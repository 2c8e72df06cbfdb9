#!/bin/sh
# First start of the PostgreSQL primary (docker-entrypoint-initdb.d): create the role the
# streaming replica connects as and let it replicate. Mounted by docker-compose.yml and,
# through the postgres-init ConfigMap, by the postgres StatefulSet.
set -eu
: "${POSTGRES_REPLICATION_PASSWORD:?POSTGRES_REPLICATION_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=replication_password="$POSTGRES_REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replication_password';
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
