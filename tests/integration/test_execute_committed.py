"""``waddlebot.sql.execute_committed`` and ``Prepared`` on real PostgreSQL.

Statements prepared once per connection, run as one transaction in one round trip:
committed when the call returns (another connection sees them at once) unless the
caller's transaction was already open, all or nothing when one of them fails.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from pydal import Field

from waddlebot.db import Database
from waddlebot.sql import Prepared, execute_committed
from waddlebot.testkit import TEST_DATABASE_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def probe(tmp_path):
    table = f"committed_probe_{uuid.uuid4().hex[:8]}"

    def define(db):
        db.define_table(table, Field("name", "string", length=64), Field("hits", "integer"))

    database = Database(TEST_DATABASE_URL, definers=[define], migrate=True, folder=str(tmp_path))
    insert = Prepared(
        f"wb_test_insert_{table}",
        f"INSERT INTO {table} (name, hits) VALUES (%s, %s) RETURNING id",
    )
    bump = Prepared(
        f"wb_test_bump_{table}",
        f"UPDATE {table} SET hits = hits + %s WHERE name = %s RETURNING name, hits",
    )
    try:
        yield database, table, insert, bump
    finally:
        with database.connection() as db:
            db[table].drop()
        database.close()


def _rows(table: str) -> list[tuple]:
    """What another connection sees (committed rows only)."""
    connection = psycopg2.connect(TEST_DATABASE_URL.replace("postgres://", "postgresql://"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT name, hits FROM {table} ORDER BY id")
            return cursor.fetchall()
    finally:
        connection.close()


def _idle(db):
    """The connection as a request finds it in the pool: no transaction open (pydal's
    session settings on connect leave one open on a fresh connection)."""
    db.commit()
    return db


def _prepared_names(db) -> set[str]:
    cursor = db._adapter.cursor
    cursor.execute("SELECT name FROM pg_prepared_statements")
    return {name for (name,) in cursor.fetchall()}


def test_statements_run_in_one_call_and_are_committed_when_it_returns(probe):
    database, table, insert, bump = probe
    with database.connection() as db:
        _idle(db)
        cursor = execute_committed(db, [(insert, ("a", 1)), (bump, (41, "a"))])
        assert cursor.fetchall() == [("a", 42)]  # the last statement's rows
        assert _rows(table) == [("a", 42)]  # before this block commits anything
        assert not db._adapter.connection.autocommit  # the connection is as it was


def test_a_statement_is_prepared_once_per_connection(probe):
    database, _table, insert, bump = probe
    with database.connection() as db:
        execute_committed(_idle(db), [(insert, ("a", 1))])
        assert {insert.name} <= _prepared_names(db)
        db.commit()
        # already prepared: only EXECUTE goes out, with new values
        execute_committed(db, [(insert, ("b", 2)), (bump, (1, "b"))])
        assert {insert.name, bump.name} <= _prepared_names(db)
        db.commit()
    assert insert.call == f"EXECUTE {insert.name}(%s, %s)"
    assert "VALUES ($1, $2)" in insert.prepare


def test_a_failing_statement_leaves_nothing_written(probe):
    database, table, insert, bump = probe
    with database.connection() as db:
        _idle(db)
        with pytest.raises(psycopg2.Error):
            # the second value is not an integer: the insert before it is undone too
            execute_committed(db, [(insert, ("a", 1)), (bump, ("many", "a"))])
        assert _rows(table) == []
        # the connection is usable and the statements stay prepared
        execute_committed(db, [(insert, ("b", 2))])
    assert _rows(table) == [("b", 2)]


def test_an_open_transaction_is_joined_not_committed(probe):
    database, table, insert, _bump = probe
    with database.connection() as db:
        _idle(db)(db[table].id > 0).select()  # the request read something first
        execute_committed(db, [(insert, ("a", 1))])
        assert _rows(table) == []  # not committed yet
        db.rollback()
    assert _rows(table) == []
    with database.connection() as db:
        _idle(db)(db[table].id > 0).select()
        execute_committed(db, [(insert, ("b", 2))])
        db.commit()
    assert _rows(table) == [("b", 2)]


def test_an_asynchronous_commit_is_committed_at_return_and_set_for_its_own_transaction(probe):
    database, table, insert, _bump = probe
    setting = "SELECT current_setting('synchronous_commit')"
    with database.connection() as db:
        _idle(db)
        cursor = execute_committed(
            db, [(insert, ("a", 1)), (setting, ())], synchronous_commit=False
        )
        assert cursor.fetchall() == [("off",)]  # inside its own transaction
        assert _rows(table) == [("a", 1)]  # committed (visible) when the call returns
        assert execute_committed(db, [(setting, ())]).fetchall() == [("on",)]  # reset after
        # joining a transaction already open leaves that transaction's setting alone
        db(db[table].id > 0).select()
        cursor = execute_committed(
            db, [(insert, ("b", 2)), (setting, ())], synchronous_commit=False
        )
        assert cursor.fetchall() == [("on",)]
        db.commit()
    assert _rows(table) == [("a", 1), ("b", 2)]
