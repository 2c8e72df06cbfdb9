"""The real PostgreSQL (primary + streaming replica) and Redis the integration tests use.

``make test`` starts them (scripts/services.sh) and exports their addresses.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg2

TEST_DATABASE_URL = os.environ.get(
    "WADDLEBOT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/waddlebot_test"
)
TEST_REPLICA_URL = os.environ.get(
    "WADDLEBOT_TEST_REPLICA_URL", "postgresql://postgres@127.0.0.1:5433/waddlebot_test"
)
TEST_REDIS_HOST = os.environ.get("WADDLEBOT_TEST_REDIS_HOST", "127.0.0.1")


def run_sql(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """One statement in autocommit (CREATE DATABASE cannot run in a transaction); its rows."""
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def database_url(name: str, url: str = TEST_DATABASE_URL) -> str:
    """``url`` with its database replaced by ``name`` (same server, same credentials)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def create_database(name: str, *, if_missing: bool = False) -> str:
    """Create ``name`` on the test primary (the replica follows); its primary URL.

    Suites and benchmarks that run beside each other use databases of their own, since
    each one wipes its database at will.
    """
    exists = run_sql(TEST_DATABASE_URL, "SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if not (exists and if_missing):
        run_sql(TEST_DATABASE_URL, f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    """Drop ``name`` from the test primary, closing whatever is still connected to it."""
    run_sql(TEST_DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def clear_store_prefix(prefix: str, host: str = TEST_REDIS_HOST) -> int:
    """Delete every Redis key under ``prefix`` (a suite's or benchmark's own keys)."""
    import redis

    client = redis.Redis(host=host, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for start in range(0, len(keys), 5000):
            client.delete(*keys[start : start + 5000])
        return len(keys)
    finally:
        client.close()
