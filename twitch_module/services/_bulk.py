"""Insert many rows at once, skipping those whose unique key is already stored.

On PostgreSQL one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` does it in
one round trip, with values represented the way pydal stores them (booleans ``'T'``/
``'F'``, JSON as text, timestamps to the second). Elsewhere (SQLite: no round trips)
pydal selects the keys present and inserts the others one by one.
"""

from __future__ import annotations

import datetime

from pydal.helpers.serializers import serializers

from waddlebot.sql import sql_timestamp


class MissingUniqueIndex(RuntimeError):
    """The table lacks the unique index ``ON CONFLICT`` needs (not migrated)."""


def _postgres_value(value):
    """A value as pydal stores it on PostgreSQL (the encodings of ``waddlebot.db``)."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, datetime.datetime):
        return sql_timestamp(value)
    if isinstance(value, (dict, list)):
        return serializers.json(value)
    return value


def insert_many(db, table: str, rows: list[dict], *, unique: str, multirow: bool = True) -> dict:
    """Insert ``rows`` (same keys each) unless their ``unique`` value exists; {key: new id}."""
    if not rows:
        return {}
    if multirow and db._adapter.dbengine == "postgres":
        return _insert_postgres(db, table, rows, unique)
    target = db[table]
    keys = [row[unique] for row in rows]
    present = {r[unique] for r in db(target[unique].belongs(keys)).select(target[unique])}
    inserted: dict = {}
    for row in rows:
        if row[unique] in present or row[unique] in inserted:
            continue
        inserted[row[unique]] = target.insert(**row)
    return inserted


def postgres_insert(table: str, rows: list[dict], unique: str) -> tuple[str, list]:
    """The one-statement multi-row insert of ``rows`` and its parameters.

    ``INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING unique, id``: the rows whose
    key is already stored (or repeated earlier in ``rows``) are skipped, and the answer
    maps each new key to its id.
    """
    columns = list(rows[0])
    single = "(" + ", ".join(["%s"] * len(columns)) + ")"
    names = ", ".join(f'"{name}"' for name in columns)
    sql = (
        f'INSERT INTO "{table}" ({names}) VALUES '
        + ", ".join([single] * len(rows))
        + f' ON CONFLICT ("{unique}") DO NOTHING RETURNING "{unique}", "id"'
    )
    return sql, [_postgres_value(row.get(name)) for row in rows for name in columns]


def is_missing_unique_index(exc: BaseException) -> bool:
    """True when PostgreSQL refused ``ON CONFLICT`` for want of a unique index."""
    return "ON CONFLICT" in str(exc).upper()


def _insert_postgres(db, table: str, rows: list[dict], unique: str) -> dict:
    sql, values = postgres_insert(table, rows, unique)
    try:
        return {key: new_id for key, new_id in db.executesql(sql, placeholders=values)}
    except Exception as exc:
        if is_missing_unique_index(exc):
            raise MissingUniqueIndex(f"{table}.{unique} has no unique index") from exc
        raise
