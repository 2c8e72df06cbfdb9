"""How often each command ran (``commands.usage_count``), summed in memory, written in batches.

Every command used to add one to its row in the same statement as its execution
record: the hottest rows of the database, updated by every worker of every router pod
at once. Two executions of one command then queue on the row lock, and the
execution record's foreign key to the same row (``FOR KEY SHARE``) makes PostgreSQL
record both lockers in a MultiXact. Counts are added up here instead and written by
one thread every ``interval`` seconds, one statement for all commands; a count shows
up at most that late. A write that fails (database briefly away) is kept and tried
again with the next batch, and what is pending is written when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from waddlebot.db import Database
from waddlebot.sql import execute, execute_committed

log = logging.getLogger("waddlebot.router.usage")


class UsageCounter:
    """Per-command run counts of this process, written to ``commands`` in batches."""

    def __init__(self, database: Database, *, interval: float = 1.0):
        self.database = database
        self.interval = interval
        self._pending: dict[int, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, command_id: int, count: int = 1) -> None:
        """Count ``count`` more runs of a command."""
        with self._lock:
            self._pending[command_id] = self._pending.get(command_id, 0) + count
            if self._thread is None or self._pid != os.getpid():
                # started on first use, so a worker forked after import gets its own
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="usage-counts", daemon=True)
                self._thread.start()
                atexit.register(self._flush_at_exit)

    def pending(self) -> dict[int, int]:
        """Counts not written yet, by command id."""
        with self._lock:
            return dict(self._pending)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - kept for the next round, never kills the thread
                log.exception("could not write command usage counts; will retry")

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the process is ending; say so, don't raise
            log.warning("usage counts of %d commands not written at exit", len(self._pending))

    def flush(self) -> None:
        """Write every pending count now."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self.database.connection() as db:
                _add_counts(db, sorted(pending.items()))
        except BaseException:
            with self._lock:
                for command_id, count in pending.items():
                    self._pending[command_id] = self._pending.get(command_id, 0) + count
            raise


def _add_counts(db, counts: list[tuple[int, int]]) -> None:
    """Add each ``(command id, count)`` to ``commands.usage_count``, ids in order (so two
    processes writing at once lock the rows in the same order)."""
    if db._adapter.dbengine != "postgres":
        for command_id, count in counts:
            execute(
                db,
                "UPDATE commands SET usage_count = COALESCE(usage_count, 0) + %s WHERE id = %s",
                (count, command_id),
            )
        db.commit()
        return
    rows = ", ".join(["(%s, %s)"] * len(counts))
    sql = (
        "UPDATE commands AS t SET usage_count = COALESCE(t.usage_count, 0) + v.n "
        f"FROM (VALUES {rows}) AS v(id, n) WHERE t.id = v.id"
    )
    params = tuple(value for pair in counts for value in pair)
    execute_committed(db, [(sql, params)], synchronous_commit=False)
