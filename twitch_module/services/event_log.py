"""Durable writes of webhook notifications to ``twitch_events``, in group commits.

Each webhook request hands its row to :class:`NotificationWriter` and waits until the
transaction holding it has committed, so nothing is acknowledged before it is stored.
One writer thread inserts everything queued meanwhile in a single transaction: under
load many notifications share one statement and one commit (one fsync), instead of
each request taking a pooled connection of its own. The unique index on
``message_id`` is the de-duplication: a message id that is already stored (a Twitch
redelivery, another replica) comes back as ``"duplicate"`` from the same statement,
rather than failing its neighbours.

The writer keeps a pooled connection while batches keep coming. On PostgreSQL a batch
is one parameterised ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` sent with
:func:`waddlebot.sql.execute_committed`: one round trip that is its own transaction,
committed (and flushed) before the answer comes back — no ``BEGIN``/``COMMIT`` round
trips, no query builder. Elsewhere (embedded SQLite) it goes through pydal.

With a consumer attached (the forwarder), new rows are written already leased to this
process and handed over in memory right after the commit: no query to find them again.
If the process dies first, the lease runs out and any forwarder's table scan sends them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future

from waddlebot.db import Database, is_connection_error, utcnow
from waddlebot.sql import execute_committed

from ._bulk import MissingUniqueIndex, insert_many, is_missing_unique_index, postgres_insert

log = logging.getLogger("waddlebot.twitch.event_log")

STORED = "stored"
DUPLICATE = "duplicate"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredNotification:
    """A committed, not yet forwarded row (the fields the forwarder reads)."""

    id: int
    message_id: str
    subscription_type: str
    broadcaster_user_id: str | None
    payload: dict
    forward_attempts: int = 0


def is_unique_violation(exc: BaseException) -> bool:
    """True for a driver's unique-constraint error (SQLite or PostgreSQL)."""
    name = type(exc).__name__
    return name in ("IntegrityError", "UniqueViolation") or "unique" in str(exc).lower()


class NotificationWriter:
    """Group-commit writer of ``twitch_events`` rows; ``store`` blocks until committed."""

    def __init__(
        self,
        database: Database,
        *,
        max_batch: int = 200,
        on_committed: Callable[[list[StoredNotification]], None] | None = None,
        lease_seconds: float = 60.0,
    ):
        self.database = database
        self.max_batch = max_batch
        self.on_committed = on_committed
        self.lease_seconds = lease_seconds
        self.lease_token = f"hot-{uuid.uuid4().hex[:28]}"
        self._queue: queue.SimpleQueue[tuple[dict, Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._multirow = True
        self._held = None
        self._db = None
        #: seconds without a notification after which the writer returns its connection
        self.idle_release = 1.0
        self.commits = 0

    def store(self, row: dict, *, timeout: float = 10.0) -> str:
        """Insert one row; ``"stored"`` or ``"duplicate"`` once committed, or raise."""
        self._ensure_thread()
        done: Future = Future()
        self._queue.put((row, done))
        return done.result(timeout=timeout)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="twitch-event-writer", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_release)
            except queue.Empty:
                self._release()
                first = self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.write(batch, keep_connection=True)
            except BaseException as exc:  # noqa: BLE001 - every waiter must get an answer
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)

    def _connection(self):
        """The writer's connection, kept while batches keep coming (no checkout each time)."""
        if self._held is None:
            self._held = self.database.connection()
            self._db = self._held.__enter__()
        return self._db

    def _release(self, *, failed: bool = False) -> None:
        """Give the connection back to the pool (idle, or after a failure)."""
        if self._held is not None:
            held, self._held, self._db = self._held, None, None
            if failed:
                with contextlib.suppress(Exception):
                    held.__exit__(RuntimeError, RuntimeError("write failed"), None)
            else:
                held.__exit__(None, None, None)

    def write(self, batch: list[tuple[dict, Future]], *, keep_connection: bool = False) -> None:
        """Insert a batch in one transaction; fall back to one by one on a conflict."""
        rows = [self._leased(row) for row, _ in batch]
        try:
            try:
                results, ids = self._insert_all(rows)
            except Exception as exc:
                if not is_unique_violation(exc):
                    raise
                results, ids = self._insert_each(rows)
        except BaseException:
            self._release(failed=True)
            raise
        if not keep_connection:
            self._release()
        self.commits += 1
        for (_, done), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)
        if self.on_committed is not None:
            handed = [
                StoredNotification(
                    id=ids[position],
                    message_id=row["message_id"],
                    subscription_type=row["subscription_type"],
                    broadcaster_user_id=row.get("broadcaster_user_id"),
                    payload=row["payload"],
                )
                for position, row in enumerate(rows)
                if results[position] == STORED and row.get("lease_token") == self.lease_token
            ]
            if handed:
                self.on_committed(handed)

    def _leased(self, row: dict) -> dict:
        """With a consumer attached, a pending row is born leased to this process."""
        if self.on_committed is None or row.get("status") != "pending":
            return row
        until = utcnow() + datetime.timedelta(seconds=self.lease_seconds)
        return {**row, "next_attempt_at": until, "lease_token": self.lease_token}

    def _insert_all(self, rows: list[dict]) -> tuple[list, list]:
        try:
            inserted = self._insert_committed(rows)
        except MissingUniqueIndex:
            self._release(failed=True)
            log.warning("twitch_events has no unique message_id index; run `waddlebot migrate`")
            self._multirow = False
            return self._insert_all(rows)
        results, ids = [], []
        for row in rows:
            # the same id twice in one batch: the second one is a duplicate
            new_id = inserted.pop(row["message_id"], None)
            results.append(STORED if new_id is not None else DUPLICATE)
            ids.append(new_id)
        return results, ids

    def _insert_committed(self, rows: list[dict]) -> dict:
        """Insert and commit; {message id: new id} of the rows that were not stored yet."""
        db = self._connection()
        if self._multirow and db._adapter.dbengine == "postgres":
            return self._insert_postgres(rows)
        inserted = insert_many(
            db, "twitch_events", rows, unique="message_id", multirow=self._multirow
        )
        db.commit()
        return inserted

    def _insert_postgres(self, rows: list[dict]) -> dict:
        """One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` committed in its own round
        trip (:func:`waddlebot.sql.execute_committed`). A connection the server dropped
        (restart, idle timeout) is replaced and the statement sent once more: safe,
        since ``ON CONFLICT DO NOTHING`` makes a resend of committed rows a no-op."""
        sql, values = postgres_insert("twitch_events", rows, "message_id")
        for attempt in (0, 1):
            db = self._connection()
            try:
                inserted = dict(execute_committed(db, [(sql, values)]).fetchall())
                db.commit()  # nothing to do unless a fresh connection had a transaction open
                return inserted
            except Exception as exc:
                if is_missing_unique_index(exc):
                    raise MissingUniqueIndex("twitch_events.message_id: no unique index") from exc
                if attempt or not is_connection_error(exc):
                    raise
                self._release(failed=True)
        raise AssertionError("unreachable")

    def _insert_each(self, rows: list[dict]) -> tuple[list, list]:
        self._release(failed=True)
        results: list = []
        ids: list = []
        for row in rows:
            try:
                with self.database.connection() as db:
                    ids.append(db.twitch_events.insert(**row))
                results.append(STORED)
            except Exception as exc:  # noqa: BLE001 - reported to that row's waiter
                ids.append(None)
                results.append(DUPLICATE if is_unique_violation(exc) else exc)
        return results, ids
