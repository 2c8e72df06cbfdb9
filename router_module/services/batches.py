"""Writes that can wait a moment: collected in memory, written by one thread in batches.

Delivery outcomes and command usage counts both cost a connection, a statement and a
commit each when written where they happen; a :class:`BatchWriter` keeps them in a dict
under a lock and one thread per process writes what has gathered, ``interval`` seconds
after the first new item, as one statement. A batch that fails (database briefly away)
is put back and tried again a second later; what is pending is written at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from abc import ABC, abstractmethod

from waddlebot.db import Database

log = logging.getLogger("waddlebot.router.batches")


class BatchWriter(ABC):
    """The pending dict, the writer thread and the flush; subclasses add items with
    :meth:`_add` and say how a batch is written (:meth:`_write`) and put back
    (:meth:`_restore`)."""

    #: the thread's name, and what the log calls the items
    name = "batch-writer"
    what = "items"

    def __init__(self, database: Database, *, interval: float):
        self.database = database
        self.interval = interval
        self._pending: dict = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def pending(self) -> dict:
        """What is not written yet."""
        with self._lock:
            return dict(self._pending)

    def _add(self, update) -> None:
        """Run ``update(pending)`` under the lock, then let the thread write soon."""
        with self._lock:
            update(self._pending)
            if self._thread is None or self._pid != os.getpid():
                # started on first use, so a worker forked after import gets its own
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
                atexit.register(self._flush_at_exit)
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)  # let a batch gather
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - kept for the next round, never kills the thread
                log.exception("could not write %s; will retry", self.what)
                time.sleep(1.0)
                self._wake.set()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the process is ending; say so, don't raise
            log.warning("%d %s not written at exit", len(self._pending), self.what)

    def flush(self) -> None:
        """Write everything pending now."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self.database.connection() as db:
                self._write(db, pending)
        except BaseException:
            with self._lock:
                self._restore(self._pending, pending)
            raise

    @abstractmethod
    def _write(self, db, batch: dict) -> None:
        """Write one batch on ``db`` (committed when this returns)."""

    @abstractmethod
    def _restore(self, pending: dict, batch: dict) -> None:
        """Put a batch that could not be written back into ``pending``."""
