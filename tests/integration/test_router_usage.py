"""``router_module.services.usage.UsageCounter``: command run counts written in batches.

On a PostgreSQL database of its own and on SQLite (the embedded default): counts of
several processes add up, nothing is written until a flush, and a flush that fails
keeps its counts for the next one.
"""

from __future__ import annotations

import uuid

import pytest

from waddlebot.db import Database
from waddlebot.router_tables import define_router_tables
from waddlebot.testkit import app_module, create_database, drop_database

UsageCounter = app_module("router_module.services.usage").UsageCounter

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "sqlite"])
def database(request, tmp_path):
    name = None
    if request.param == "postgres":
        name = f"waddlebot_usage_{uuid.uuid4().hex[:8]}"
        uri = create_database(name)
    else:
        uri = f"sqlite://{tmp_path}/usage.sqlite"
    database = Database(uri, definers=[define_router_tables], migrate=True, folder=str(tmp_path))
    try:
        with database.connection() as db:
            ids = [
                db.commands.insert(
                    command=f"c{n}", prefix="!", type="container", module_name="m", usage_count=5
                )
                for n in range(3)
            ]
        yield database, ids
    finally:
        database.close()
        if name:
            drop_database(name)


def _counts(database, ids) -> list[int]:
    with database.connection() as db:
        return [db.commands[i].usage_count for i in ids]


def test_counts_of_several_processes_add_up_at_each_flush(database):
    database, (a, b, c) = database
    one, two = UsageCounter(database, interval=3600), UsageCounter(database, interval=3600)
    for _ in range(3):
        one.add(a)
    one.add(b)
    two.add(a, 2)
    assert _counts(database, (a, b, c)) == [5, 5, 5]  # nothing written before a flush
    assert one.pending() == {a: 3, b: 1}
    one.flush()
    two.flush()
    assert _counts(database, (a, b, c)) == [10, 6, 5]
    assert one.pending() == {} and two.pending() == {}
    one.flush()  # nothing pending: nothing written
    assert _counts(database, (a, b, c)) == [10, 6, 5]


def test_a_failed_flush_keeps_its_counts_for_the_next(database):
    database, (a, b, _c) = database
    usage = UsageCounter(database, interval=3600)
    usage.add(a, 2)
    with database.connection() as db:
        db.executesql("ALTER TABLE commands RENAME TO commands_away")
        db.commit()
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            usage.flush()
        usage.add(a)
        usage.add(b)
        assert usage.pending() == {a: 3, b: 1}
    finally:
        with database.connection() as db:
            db.executesql("ALTER TABLE commands_away RENAME TO commands")
            db.commit()
    usage.flush()
    assert _counts(database, (a, b)) == [8, 6]


def test_the_thread_writes_on_its_own(database):
    import time

    database, (a, _b, _c) = database
    usage = UsageCounter(database, interval=0.05)
    usage.add(a)
    deadline = time.monotonic() + 5
    while _counts(database, (a,)) != [6] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counts(database, (a,)) == [6]


def test_processes_flushing_the_same_commands_at_once_do_not_deadlock(tmp_path):
    """Every router process flushes about once a second, most of them the same hot
    commands: two flushes at once must queue on the rows, not deadlock (PostgreSQL
    gives up on one after ``deadlock_timeout`` and its counts come a flush late)."""
    import random
    import threading

    name = f"waddlebot_usage_{uuid.uuid4().hex[:8]}"
    database = Database(
        create_database(name), definers=[define_router_tables], migrate=True, folder=str(tmp_path)
    )
    try:
        with database.connection() as db:
            db.executesql(
                "INSERT INTO commands (command, prefix, type, module_name, usage_count) "
                "SELECT 'c' || g, '!', 'container', 'm', 0 FROM generate_series(1, 400) AS g"
            )
            db.commit()
            ids = [r[0] for r in db.executesql("SELECT id FROM commands ORDER BY id")]
        errors: list[BaseException] = []
        added = [0, 0, 0]
        start = threading.Barrier(3)

        def flusher(n: int) -> None:
            usage = UsageCounter(database, interval=3600)
            rng = random.Random(n)
            start.wait()
            for _ in range(25):
                for command_id in rng.sample(ids, 250):
                    usage.add(command_id)
                    added[n] += 1
                try:
                    usage.flush()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=flusher, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[0]
        with database.connection() as db:
            total = db.executesql("SELECT SUM(usage_count) FROM commands")[0][0]
        assert total == sum(added)
    finally:
        database.close()
        drop_database(name)
