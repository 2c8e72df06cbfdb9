"""The real PostgreSQL (primary + streaming replica) and Redis the integration tests use.

``make test`` starts them (scripts/services.sh) and exports their addresses.
"""

from __future__ import annotations

import os
import time

import psycopg2

TEST_DATABASE_URL = os.environ.get(
    "WADDLEBOT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/waddlebot_test"
)
TEST_REPLICA_URL = os.environ.get(
    "WADDLEBOT_TEST_REPLICA_URL", "postgresql://postgres@127.0.0.1:5433/waddlebot_test"
)
TEST_REDIS_HOST = os.environ.get("WADDLEBOT_TEST_REDIS_HOST", "127.0.0.1")


def reset_postgres(url: str = TEST_DATABASE_URL) -> None:
    """Drop every table of the test database (the replica follows by streaming)."""
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        connection.close()


def wait_for_replica(
    primary_url: str = TEST_DATABASE_URL, replica_url: str = TEST_REPLICA_URL, timeout: float = 10.0
) -> None:
    """Block until the replica has replayed everything the primary has written."""
    primary = psycopg2.connect(primary_url)
    replica = psycopg2.connect(replica_url)
    try:
        primary.autocommit = replica.autocommit = True
        with primary.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            target = cursor.fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            with replica.cursor() as cursor:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
                if cursor.fetchone()[0]:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("replica did not catch up with the primary")
            time.sleep(0.02)
    finally:
        primary.close()
        replica.close()
