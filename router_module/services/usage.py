"""How often each command ran (``commands.usage_count``), summed in memory, written in batches.

Every command used to add one to its row in the same statement as its execution
record: the hottest rows of the database, updated by every worker of every router pod
at once. Two executions of one command then queue on the row lock, and the
execution record's foreign key to the same row (``FOR KEY SHARE``) makes PostgreSQL
record both lockers in a MultiXact. Counts are added up here instead and written by
one thread every ``interval`` seconds (five by default), one statement for all
commands; a count shows up at most that late. A write that fails (database briefly
away) is kept and tried again with the next batch, and what is pending is written when
the process exits.
"""

from __future__ import annotations

from waddlebot.db import Database
from waddlebot.sql import execute, execute_committed

from .batches import BatchWriter


class UsageCounter(BatchWriter):
    """Per-command run counts of this process, written to ``commands`` in batches."""

    name = "usage-counts"
    what = "command usage counts"

    #: seconds between writes. Each write updates the row of every command used since
    #: the last one (≈ 270 rows per router worker per second in the router bench's 500
    #: commands at 600/s, each a new row version and, on a full page, index entries):
    #: at 1 s that was almost as many row writes as the execution records themselves.
    #: A usage count is a catalogue statistic; five seconds late is fine.
    default_interval = 5.0

    def __init__(self, database: Database, *, interval: float | None = None):
        super().__init__(database, interval=self.default_interval if interval is None else interval)

    def add(self, command_id: int, count: int = 1) -> None:
        """Count ``count`` more runs of a command."""

        def update(pending: dict) -> None:
            pending[command_id] = pending.get(command_id, 0) + count

        self._add(update)

    def _write(self, db, batch: dict) -> None:
        _add_counts(db, sorted(batch.items()))

    def _restore(self, pending: dict, batch: dict) -> None:
        for command_id, count in batch.items():
            pending[command_id] = pending.get(command_id, 0) + count


def _add_counts(db, counts: list[tuple[int, int]]) -> None:
    """Add each ``(command id, count)`` to ``commands.usage_count`` (ids in order)."""
    if db._adapter.dbengine != "postgres":
        for command_id, count in counts:
            execute(
                db,
                "UPDATE commands SET usage_count = COALESCE(usage_count, 0) + %s WHERE id = %s",
                (count, command_id),
            )
        db.commit()
        return
    # The UPDATE visits the rows in whatever order its plan scans ``commands`` (and
    # moves them as it writes), not in the order of the list: two processes flushing
    # at once deadlocked. The rows are locked first, in id order, in the same
    # transaction; the UPDATE then finds them already held.
    ids = [command_id for command_id, _count in counts]
    lock = "SELECT id FROM commands WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
    rows = ", ".join(["(%s, %s)"] * len(counts))
    update = (
        "UPDATE commands AS t SET usage_count = COALESCE(t.usage_count, 0) + v.n "
        f"FROM (VALUES {rows}) AS v(id, n) WHERE t.id = v.id"
    )
    params = tuple(value for pair in counts for value in pair)
    execute_committed(db, [(lock, (ids,)), (update, params)], synchronous_commit=False)
