"""The collector's PostgreSQL paths: group-commit inserts, leases, activities.

PostgreSQL takes code paths SQLite does not (one multi-row ``INSERT ... ON CONFLICT DO
NOTHING`` per batch, leasing through a sub-select), so they run here against the test
cluster - in a database of their own, ``waddlebot_twitch_test``, so the suites that wipe
the shared test database cannot pull it away mid-test.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import types
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from waddlebot.db import Database, utcnow
from waddlebot.testkit import StubServer, create_database, reset_postgres

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "twitch"
DATABASE = "waddlebot_twitch_test"


def _app(module: str):
    """Import ``twitch_module.<module>`` without executing the app package's __init__."""
    if "twitch_module" not in sys.modules:
        package = types.ModuleType("twitch_module")
        package.__path__ = [str(ROOT / "twitch_module")]
        sys.modules["twitch_module"] = package
    return importlib.import_module(f"twitch_module.{module}")


models = _app("models")
event_log = _app("services.event_log")
forwarder_module = _app("services.forwarder")
router_client = _app("services.router")
bulk = _app("services._bulk")


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    url = create_database(DATABASE, if_missing=True)
    reset_postgres(url)
    folder = str(tmp_path_factory.mktemp("pg"))
    Database(url, definers=[models.define_tables], migrate=True, folder=folder).close()
    db = Database(url, definers=[models.define_tables], folder=folder, pool_size=4)
    yield db
    db.close()


def _row(message_id: str, **changes) -> dict:
    now = utcnow()
    row = dict(
        message_id=message_id,
        subscription_id="sub-1",
        subscription_type="channel.follow",
        subscription_version="2",
        broadcaster_user_id="1337",
        payload=json.loads((FIXTURES / "channel.follow.json").read_text()),
        message_timestamp=now,
        received_at=now,
        status="pending",
        forwarded=False,
        forward_attempts=0,
        next_attempt_at=now,
        last_error=None,
        processed_at=None,
    )
    row.update(changes)
    return row


def test_group_commit_stores_once_and_reads_back_like_pydal_wrote_it(database):
    writer = event_log.NotificationWriter(database)
    batch = [(_row("pg-a"), Future()), (_row("pg-b"), Future()), (_row("pg-a"), Future())]
    writer.write(batch)
    assert [done.result() for _, done in batch] == ["stored", "stored", "duplicate"]
    again = [(_row("pg-b"), Future()), (_row("pg-c"), Future())]
    writer.write(again)
    assert [done.result() for _, done in again] == ["duplicate", "stored"]
    with database.connection() as db:
        row = db(db.twitch_events.message_id == "pg-a").select().first()
        assert row.forwarded is False and row.status == "pending"
        assert row.payload["event"]["user_login"] == "cool_user"
        assert row.next_attempt_at is not None and row.forward_attempts == 0
        assert db(db.twitch_events.forwarded == False).count() == 3  # noqa: E712


def test_concurrent_stores_share_commits(database):
    writer = event_log.NotificationWriter(database)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(writer.store(_row(f"pg-t{n}"))))
        for n in range(30)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("stored") == 30 and writer.commits <= 30


def test_the_writer_commits_in_one_statement_and_survives_a_dropped_connection(database):
    writer = event_log.NotificationWriter(database)
    # the writer's own thread (connections are per thread), keeping its connection
    # between batches as it does under load
    with ThreadPoolExecutor(max_workers=1) as writer_thread:

        def write(batch):
            writer_thread.submit(writer.write, batch, keep_connection=True).result()
            return writer_thread.submit(lambda: writer._db._adapter.connection).result()

        first = [(_row("pg-d1"), Future())]
        connection = write(first)
        assert first[0][1].result() == "stored"
        # committed when write() returns: another session sees the row at once
        with database.connection() as db:
            assert db(db.twitch_events.message_id == "pg-d1").count() == 1
            # the server drops the writer's connection (restart, idle timeout, failover)
            pid = connection.get_backend_pid()
            db.executesql("SELECT pg_terminate_backend(%s);", placeholders=[pid])
        again = [(_row("pg-d2"), Future()), (_row("pg-d1"), Future())]
        assert write(again) is not connection  # replaced, and the batch sent once more
        assert [done.result() for _, done in again] == ["stored", "duplicate"]
        writer_thread.submit(writer._release).result()


def test_forwarding_leases_records_and_counts_activities(database):
    router = StubServer()
    router.route(
        "POST",
        r"/api/router/events/batch",
        lambda r: {
            "results": [
                {"status": "processed", "reputation": {"points": 10, "total": 10}}
                for _ in r.json["events"]
            ]
        },
    )
    router.route("POST", r"/api/router/events", {"status": "duplicate"})
    try:
        client = router_client.RouterClient(router.url, "test-key", timeout=5)
        forwarder = forwarder_module.EventForwarder(database=database, router=client)
        taken = 0
        while True:
            handled = forwarder.run_once()
            if not handled:
                break
            taken += handled
        with database.connection() as db:
            events = db.twitch_events
            pending = db(events.forwarded == False).count()  # noqa: E712
            forwarded = db(events.status == "forwarded").count()
            activities = db(db.twitch_activities.id > 0).select().as_list()
        assert taken == forwarded and pending == 0 and forwarded >= 33
        assert len(activities) == forwarded
        assert {a["points"] for a in activities} == {10} and all(
            a["context_sent"] for a in activities
        )
        # recording the same event again (a resend) adds no second activity
        events_module = _app("services.events")
        with database.connection() as db:
            row = db(db.twitch_events.message_id == "pg-a").select().first()
            again = forwarder_module.Outcome(
                row,
                "forwarded",
                translation=events_module.translate(
                    "channel.follow", row.payload, message_id="pg-a"
                ),
                answer={"status": "duplicate"},
            )
            forwarder_module._record_activities(db, [again], multirow=True)
            assert db(db.twitch_activities.event_id == "pg-a").count() == 1
    finally:
        router.close()


def test_without_the_unique_index_the_writer_falls_back(database):
    with database.connection() as db:
        db.executesql("DROP INDEX IF EXISTS twitch_events_message;")
    try:
        writer = event_log.NotificationWriter(database)
        batch = [(_row("pg-x"), Future()), (_row("pg-y"), Future())]
        writer.write(batch)
        assert [done.result() for _, done in batch] == ["stored", "stored"]
        with pytest.raises(bulk.MissingUniqueIndex):
            with database.connection() as db:
                bulk.insert_many(db, "twitch_events", [_row("pg-z")], unique="message_id")
    finally:
        with database.connection() as db:
            db.executesql(
                "CREATE UNIQUE INDEX IF NOT EXISTS twitch_events_message "
                "ON twitch_events (message_id);"
            )
