"""Hot-path SQL: parameterised statements on the thread's pydal connection.

pydal's query builder costs more CPU than the database spends on a one-row statement;
the few statements every command, claim or notification runs are written here as SQL,
with values encoded the way pydal stores them, so rows written either way agree.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import weakref

from py4web.core import DAL
from pydal.helpers.serializers import serializers

_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE (psycopg2 is imported lazily)


@dataclasses.dataclass(slots=True)
class _Statement:
    sql: str
    params: list
    is_insert: bool
    returning: str = "id"  # what PostgreSQL's CTE returns (``t.id`` when ids are ambiguous)
    many: bool = False  # SQLite runs it with executemany over ``params``
    #: PostgreSQL may prepare it: not a VALUES list, whose parameters have no type to
    #: infer when prepared and whose length varies
    preparable: bool = True


class Writes:
    """Hot-path writes as parameterised SQL, several of them in one round trip.

    pydal's query builder spends 0.1–0.3 ms of CPU per statement (representers,
    thread-safe field attributes, per-access connection lookups) — more than the
    database takes to run a one-row INSERT. For the few statements every command runs
    (its execution record, usage counters, its responses) this builds the SQL from the
    pydal definition, encodes values the way pydal stores them, and sends them on the
    thread's pydal connection. On PostgreSQL all statements travel as one prepared
    statement of data-modifying CTEs, in one round trip, committed when ``run()``
    returns unless the thread's transaction was already open, in which case they join
    it (:func:`execute_committed`). On SQLite they run one after another in the
    thread's transaction.

    ``run()`` returns, per statement in order: the new row's id for an insert, the
    number of rows changed for an update.

    ``synchronous_commit=False`` is for records whose last fraction of a second may be
    lost if the PostgreSQL server crashes (execution and response logs, usage
    counters): their own transaction commits without waiting for its WAL to reach
    disk (``SET LOCAL synchronous_commit = off``), so the WAL writer and the streaming
    replica take them in batches instead of one flush, send and replay per command.
    Nothing is corrupted by a crash, and a crash of the app loses nothing committed.
    It has no effect when the statements join a transaction that is already open.
    """

    def __init__(self, dal: DAL, *, synchronous_commit: bool = True):
        self._dal = dal
        self._synchronous_commit = synchronous_commit
        self._postgres = dal._adapter.dbengine == "postgres"
        self._mark = "%s" if self._postgres else "?"
        self._statements: list[_Statement] = []

    def __len__(self) -> int:
        return len(self._statements)

    def insert(self, table: str, **values) -> Writes:
        """``INSERT`` one row; fields left out get their pydal default."""
        row = {}
        for name, kind, default in _layout(self._dal, table):
            if name in values:
                row[name] = _encode(kind, values.pop(name))
            elif default is not None:
                row[name] = _encode(kind, default() if callable(default) else default)
        if values:
            raise KeyError(f"{table} has no field(s) {', '.join(sorted(values))}")
        marks = ", ".join([self._mark] * len(row))
        sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})"
        self._statements.append(_Statement(sql, list(row.values()), True))
        return self

    def increment(self, table: str, where: dict, column: str, amount: int = 1, **also) -> Writes:
        """``UPDATE table SET column = column + amount[, also…] WHERE where…``."""
        fields = self._dal[table]
        sets = [f"{column} = COALESCE({column}, 0) + {self._mark}"]
        params: list = [int(amount)]
        for name, value in also.items():
            sets.append(f"{name} = {self._mark}")
            params.append(_encode(fields[name].type, value))
        conditions = []
        for name, value in where.items():
            conditions.append(f"{name} = {self._mark}")
            params.append(_encode(fields[name].type, value))
        sql = f"UPDATE {table} SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"
        self._statements.append(_Statement(sql, params, False))
        return self

    def update_by_id(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> Writes:
        """Set ``columns`` of many rows, each given as ``(id, value, …)``."""
        kinds = [self._dal[table][c].type for c in columns]
        encoded = [
            [*(_encode(k, v) for k, v in zip(kinds, row[1:], strict=True)), int(row[0])]
            for row in rows
        ]
        if not self._postgres:
            sets = ", ".join(f"{c} = ?" for c in columns)
            sql = f"UPDATE {table} SET {sets} WHERE id = ?"
            self._statements.append(_Statement(sql, encoded, False, many=True))
            return self
        row_marks = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
        sets = ", ".join(f"{c} = v.{c}" for c in columns)
        sql = (
            f"UPDATE {table} AS t SET {sets} "
            f"FROM (VALUES {', '.join([row_marks] * len(rows))}) AS v({', '.join(columns)}, id) "
            "WHERE t.id = v.id"
        )
        params = [value for row in encoded for value in row]
        self._statements.append(_Statement(sql, params, False, returning="t.id", preparable=False))
        return self

    def run(self) -> list[int]:
        """Send the statements (one round trip on PostgreSQL); see the class docstring."""
        statements, self._statements = self._statements, []
        if not statements:
            return []
        if not self._postgres:
            adapter = self._dal._adapter
            adapter.connection  # noqa: B018 - takes this thread's pooled connection if none yet
            cursor = adapter.cursor
            results = []
            for statement in statements:
                if statement.many:
                    cursor.executemany(statement.sql, statement.params)
                else:
                    cursor.execute(statement.sql, statement.params)
                results.append(cursor.lastrowid if statement.is_insert else cursor.rowcount)
            return results
        parts, params, picks = [], [], []
        for number, statement in enumerate(statements):
            parts.append(f"w{number} AS ({statement.sql} RETURNING {statement.returning})")
            params.extend(statement.params)
            picks.append(
                f"(SELECT id FROM w{number})"
                if statement.is_insert
                else f"(SELECT count(*) FROM w{number})"
            )
        sql = f"WITH {', '.join(parts)} SELECT {', '.join(picks)}"
        preparable = all(statement.preparable for statement in statements)
        cursor = execute_committed(
            self._dal,
            [(_shape(sql) if preparable else sql, params)],
            synchronous_commit=self._synchronous_commit,
        )
        return [int(value) for value in cursor.fetchone()]


def sql_timestamp(value: datetime.datetime) -> str:
    """A timestamp parameter as pydal stores one (to the second, space-separated)."""
    return value.isoformat(" ")[:19]


def execute(dal: DAL, sql: str, params=()):
    """Run one parameterised statement (``%s`` marks) on this thread's pydal connection.

    The connection is taken from the pool if the thread has none yet, so the statement
    joins the request's transaction; on SQLite the marks become ``?``. Returns the
    cursor (``fetchall``, ``rowcount``).
    """
    adapter = dal._adapter
    if adapter.dbengine != "postgres":
        sql = sql.replace("%s", "?")
    adapter.connection  # noqa: B018 - takes this thread's pooled connection if none yet
    adapter.cursor.execute(sql, params)
    return adapter.cursor


class Prepared:
    """A statement PostgreSQL parses and plans once per connection.

    ``sql`` has ``%s`` marks, as for :func:`execute` (which runs it unprepared, as
    SQLite needs). :func:`execute_committed` sends ``PREPARE name AS …`` the first time
    a connection runs it and ``EXECUTE name(…)`` from then on: parsing and planning
    cost the server more than running these statements does.
    """

    __slots__ = ("name", "sql", "prepare", "call")

    def __init__(self, name: str, sql: str):
        self.name = name
        self.sql = sql
        pieces = sql.split("%s")
        numbered = pieces[0]
        for number, piece in enumerate(pieces[1:], start=1):
            numbered += f"${number}{piece}"
        self.prepare = f"PREPARE {name} AS {numbered}"
        marks = ", ".join(["%s"] * (len(pieces) - 1))
        self.call = f"EXECUTE {name}({marks})" if marks else f"EXECUTE {name}"


#: the shapes of Writes statements seen by this process (SQL text → Prepared); past
#: _MAX_SHAPES (e.g. batches of every size) new shapes run unprepared
_shapes: dict[str, Prepared] = {}
_MAX_SHAPES = 128


def _shape(sql: str) -> Prepared | str:
    statement = _shapes.get(sql)
    if statement is None:
        if len(_shapes) >= _MAX_SHAPES:
            return sql
        name = "wb_writes_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
        statement = _shapes.setdefault(sql, Prepared(name, sql))
    return statement


#: names prepared on each connection (PREPARE outlives a rolled-back transaction, so a
#: name is recorded once its PREPARE has run, whatever happens to what follows)
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: sent ahead of the statements of an own transaction that need not wait for its WAL
_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"


def execute_committed(
    dal: DAL,
    statements: list[tuple[Prepared | str, tuple]],
    *,
    synchronous_commit: bool = True,
):
    """Run statements (prepared, or SQL text) on PostgreSQL as one transaction that has
    committed when this returns, in a single round trip; the cursor holds the last
    one's rows.

    With no transaction open on the thread's connection they go out in autocommit mode
    as one simple query, which PostgreSQL runs as one implicit transaction (all of it
    commits, or none): no ``BEGIN`` and ``COMMIT`` round trips, and the caller's later
    ``commit()`` has nothing to do. If a transaction is already open (the request read
    something first) they join it and commit with it. ``synchronous_commit=False``
    lets that own transaction commit without waiting for its WAL flush (see
    :class:`Writes`); a transaction already open keeps its own setting. PostgreSQL only.
    """
    adapter = dal._adapter
    connection = adapter.connection
    cursor = adapter.cursor
    idle = connection.info.transaction_status == _IDLE
    if idle:
        connection.autocommit = True
    try:
        done = _prepared.setdefault(connection, set())
        calls = [] if synchronous_commit or not idle else [_ASYNC_COMMIT]
        for statement, _params in statements:
            if isinstance(statement, str):
                calls.append(statement)
                continue
            if statement.name not in done:
                cursor.execute(statement.prepare)
                done.add(statement.name)
            calls.append(statement.call)
        cursor.execute(
            ";\n".join(calls),
            tuple(value for _statement, params in statements for value in params),
        )
    finally:
        if idle:
            connection.autocommit = False
    return cursor


def _layout(dal: DAL, table: str) -> tuple[tuple[str, str, object], ...]:
    """(name, type, default) of a table's columns but ``id``, read from pydal once.

    Iterating a pydal table and reading each field's thread-safe ``default`` cost more
    than the INSERT it feeds; table definitions do not change while a process runs.
    """
    layouts = dal.__dict__.setdefault("_waddlebot_layouts", {})
    layout = layouts.get(table)
    if layout is None:
        layout = tuple((f.name, f.type, f.default) for f in dal[table] if f.name != "id")
        layouts[table] = layout
    return layout


def _encode(kind: str, value):
    """A Python value as pydal stores it in a column of type ``kind`` ('T'/'F', JSON text)."""
    if value is None:
        return None
    if kind == "boolean":
        return "T" if value else "F"
    if kind in ("json", "jsonb"):
        return serializers.json(value)
    if kind == "datetime" and isinstance(value, datetime.datetime):
        return sql_timestamp(value)
    return value
