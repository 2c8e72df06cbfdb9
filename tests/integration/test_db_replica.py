"""``waddlebot.db.Database`` on the real PostgreSQL primary and its streaming replica.

Reads through ``database.read`` go to the hot standby (proved with
``pg_is_in_recovery()``), fall back to the primary while the replica is stopped
(``scripts/services.sh stop-replica``), and return to the replica once it is back.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from waddlebot.db import Database, DatabaseUnavailable
from waddlebot.testkit import (
    TEST_DATABASE_URL,
    TEST_REPLICA_URL,
    reset_postgres,
    wait_for_replica,
)

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _services(command: str) -> None:
    if not SERVICES.is_file():
        pytest.fail(f"{SERVICES} is missing")
    done = subprocess.run(
        ["bash", str(SERVICES), command], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"scripts/services.sh {command} failed:\n{done.stderr[-2000:]}"


def _in_recovery(db) -> bool:
    """True on the hot standby, False on the primary."""
    return db.executesql("SELECT pg_is_in_recovery();")[0][0]


@pytest.fixture(scope="module")
def database():
    _services("start-replica")  # no-op when it is up; restores it if a run was interrupted
    for attempt in range(3):  # a fleet still writing can deadlock the DROP SCHEMA; retry
        try:
            reset_postgres()
            break
        except psycopg2.errors.DeadlockDetected:
            if attempt == 2:
                raise
            time.sleep(0.5)
    database = Database(TEST_DATABASE_URL, TEST_REPLICA_URL, definers=[], migrate=True)
    try:
        wait_for_replica()
        yield database
    finally:
        database.close()


def _insert_server(database: Database) -> str:
    marker = uuid.uuid4().hex
    with database.connection() as db:
        db.servers.insert(
            platform="console", server_id=marker, channel=marker, owner="replica-test", config={}
        )
    return marker


def _read_server(marker: str):
    def read(db):
        row = db(db.servers.server_id == marker).select().first()
        return _in_recovery(db), row

    return read


def test_primary_is_not_in_recovery(database):
    with database.connection() as db:
        assert _in_recovery(db) is False


def test_reads_are_served_by_the_replica(database):
    marker = _insert_server(database)
    wait_for_replica()
    in_recovery, row = database.read(_read_server(marker))
    assert in_recovery is True, "database.read did not run on the replica"
    assert row is not None and row.owner == "replica-test" and row.channel == marker
    health = database.health()
    assert health["primary"]["status"] == "ok"
    assert health["replica"]["status"] == "ok"


def test_a_failed_query_on_the_replica_does_not_break_later_reads(database):
    fallbacks = database.replica_fallbacks
    with pytest.raises(Exception) as caught:
        database.read(lambda db: db.executesql("SELECT * FROM no_such_table;"))
    assert "no_such_table" in str(caught.value)
    # an SQL error is the caller's problem, not a replica outage ...
    assert database.replica_fallbacks == fallbacks
    # ... and the aborted transaction is not left behind on this thread's connection
    assert database.read(_in_recovery) is True


def test_replica_down_falls_back_to_primary_then_recovers(database):
    database.replica_retry_after = 0.2
    marker = _insert_server(database)
    wait_for_replica()
    assert database.read(_in_recovery) is True  # a pooled replica connection exists
    before = database.replica_fallbacks
    _services("stop-replica")
    try:
        in_recovery, row = database.read(_read_server(marker))
        assert in_recovery is False, "with the replica stopped the read must run on the primary"
        assert row is not None and row.channel == marker
        assert database.replica_fallbacks > before
        health = database.health()
        assert health["primary"]["status"] == "ok"
        assert health["replica"]["status"] == "down"
        assert health["replica_fallbacks"] == database.replica_fallbacks

        # still down after the back-off: retried, fails again, served by the primary again
        time.sleep(database.replica_retry_after + 0.1)
        counted = database.replica_fallbacks
        assert database.read(_in_recovery) is False
        assert database.replica_fallbacks > counted
        # a write goes on while the replica is away
        marker = _insert_server(database)
    finally:
        _services("start-replica")

    wait_for_replica()
    time.sleep(database.replica_retry_after + 0.1)
    in_recovery, row = database.read(_read_server(marker))
    assert in_recovery is True, "reads did not return to the replica after it came back"
    assert row is not None, "the replica did not catch up with the write made while it was down"
    health = database.health()
    assert health["replica"]["status"] == "ok"


def test_unreachable_primary_names_database_url():
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        Database(
            "postgresql://postgres:pw-not-shown@127.0.0.1:1/waddlebot_test",
            definers=[],
            connect_attempts=1,
        )
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "DATABASE_URL" in message
    assert "127.0.0.1:1" in message
    assert "pw-not-shown" not in message
    assert elapsed < 5, f"took {elapsed:.1f}s to give up with connect_attempts=1"
