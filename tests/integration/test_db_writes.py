"""``waddlebot.db.Writes``: hot-path SQL that pydal reads back exactly as if it wrote it.

Run on PostgreSQL (one round trip of data-modifying CTEs) and on SQLite (the embedded
default, one statement after another): inserts with pydal defaults and encodings
(boolean, JSON, datetime, references), counters, batched updates by id, rollback.
"""

from __future__ import annotations

import datetime
import uuid

import pytest
from pydal import Field

from waddlebot.db import Database
from waddlebot.sql import Writes
from waddlebot.testkit import TEST_DATABASE_URL

pytestmark = pytest.mark.integration


def _define(table: str):
    def define(db):
        db.define_table(
            table,
            Field("name", "string", length=64, notnull=True),
            Field("flag", "boolean", default=True),
            Field("payload", "json"),
            Field("hits", "integer", default=0),
            Field("seen_at", "datetime"),
            Field("state", "string", length=16, default="new"),
            Field("created_at", "datetime", default=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5)),
        )

    return define


@pytest.fixture(params=["postgres", "sqlite"])
def database(request, tmp_path):
    table = f"writes_probe_{uuid.uuid4().hex[:8]}"
    uri = TEST_DATABASE_URL if request.param == "postgres" else f"sqlite://{tmp_path}/w.sqlite"
    database = Database(uri, definers=[_define(table)], migrate=True, folder=str(tmp_path))
    try:
        yield database, table
    finally:
        with database.connection() as db:
            db[table].drop()
        database.close()


def test_insert_reads_back_through_pydal(database):
    database, table = database
    seen = datetime.datetime(2026, 11, 25, 6, 30, 15, 123456)
    with database.connection() as db:
        first, second = (
            Writes(db)
            .insert(table, name="a", flag=False, payload={"k": [1, "é"]}, seen_at=seen)
            .insert(table, name="b")
            .run()
        )
    with database.connection() as db:
        a, b = db[table][first], db[table][second]
    assert (a.name, a.flag, a.payload, a.hits, a.state) == ("a", False, {"k": [1, "é"]}, 0, "new")
    assert a.seen_at == seen.replace(microsecond=0)
    assert a.created_at == datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert (b.name, b.flag, b.payload, b.seen_at) == ("b", True, None, None)


def test_increment_and_batched_updates(database):
    database, table = database
    with database.connection() as db:
        ids = (
            Writes(db).insert(table, name="x").insert(table, name="y").insert(table, name="z").run()
        )
    x, y, z = ids
    with database.connection() as db:
        counts = (
            Writes(db)
            .increment(table, {"id": x}, "hits", 3, state="counted")
            .increment(table, {"name": "nobody"}, "hits")
            .update_by_id(table, ("state", "hits"), [(y, "done", 7), (z, "failed", 2)])
            .run()
        )
    assert counts == [1, 0, 2]
    with database.connection() as db:
        rows = {r.id: (r.state, r.hits) for r in db(db[table].id.belongs(ids)).select()}
    assert rows == {x: ("counted", 3), y: ("done", 7), z: ("failed", 2)}


def test_writes_join_the_transaction(database):
    """A failure later in the request rolls the writes back with everything else."""
    database, table = database
    with pytest.raises(RuntimeError), database.connection() as db:
        Writes(db).insert(table, name="ghost").run()
        raise RuntimeError("boom")
    with database.connection() as db:
        assert db(db[table].name == "ghost").count() == 0


def test_unknown_field_is_refused_before_anything_is_sent(database):
    database, table = database
    with database.connection() as db:
        with pytest.raises(KeyError, match="no_such"):
            Writes(db).insert(table, name="n", no_such=1)
        assert Writes(db).run() == []
        assert db(db[table]).count() == 0
