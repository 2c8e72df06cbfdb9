"""Serving under gevent: psycopg2 must wait the way gevent's sockets do.

The router runs under gunicorn's gevent worker (``GUNICORN_WORKER_CLASS=gevent``): one
OS thread per worker process, every request, delivery and pool "thread" a greenlet, so
no GIL hand-offs between dozens of threads (bench/README.md, router). gevent patches
the standard library's sockets, which covers redis-py, ``http.client``, urllib3 and
boto3; psycopg2 talks to PostgreSQL through libpq in C, where a waiting query would
stop every greenlet of the process. psycopg2's wait callback makes libpq's waits go
through gevent instead (the documented way to run psycopg2 under a coroutine library).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def gevent_patched() -> bool:
    """Whether gevent has monkey-patched this process's sockets."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def _wait(connection, timeout=None):
    """psycopg2 wait callback: poll the connection, yielding to gevent while it waits."""
    import psycopg2
    from gevent.socket import wait_read, wait_write

    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            wait_read(connection.fileno(), timeout=timeout)
        elif state == psycopg2.extensions.POLL_WRITE:
            wait_write(connection.fileno(), timeout=timeout)
        else:
            raise psycopg2.OperationalError(f"unexpected connection poll state {state!r}")


def cooperate() -> bool:
    """Under gevent, make psycopg2 wait through it; returns whether it was needed."""
    if not gevent_patched():
        return False
    import psycopg2.extensions

    psycopg2.extensions.set_wait_callback(_wait)
    return True


class Background:
    """Runs functions off the request, at most ``workers`` at a time, in the order given.

    Outside gevent a ``ThreadPoolExecutor``. Under gevent the executor's "threads" are
    greenlets already, but each call still paid for a ``Future`` (a ``Condition`` and
    its ``RLock``), a queue hand-off and a wake-up of a pool greenlet, for chat pushes
    nobody waits on (≈ 7 % of a router worker's profile samples at 600 commands/s,
    though no saving showed on the clock through the bench box's noise:
    bench/README.md, router). There each call is a greenlet of its own that waits for
    one of ``workers`` slots (FIFO), so a slow collector queues work, as the executor
    did, and never blocks the caller. A call that raises is logged, not lost silently.
    """

    def __init__(self, workers: int, *, name: str):
        self.name = name
        self._log = logging.getLogger(f"waddlebot.background.{name}")
        self._green = gevent_patched()
        self._closed = False
        if self._green:
            from gevent.lock import Semaphore
            from gevent.pool import Group

            self._group = Group()
            self._slots = Semaphore(workers)
        else:
            self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def submit(self, function: Callable[..., object], *args) -> None:
        """Run ``function(*args)`` in the background."""
        if self._closed:
            raise RuntimeError(f"{self.name}: submit after shutdown")
        if self._green:
            self._group.spawn(self._in_slot, function, args)
        else:
            self._executor.submit(self._logged, function, args)

    def _in_slot(self, function, args) -> None:
        with self._slots:
            self._logged(function, args)

    def _logged(self, function, args) -> None:
        try:
            function(*args)
        except Exception:
            self._log.exception("%s: background call failed", self.name)

    def shutdown(self, wait: bool = True) -> None:
        """Take no more calls; with ``wait``, return once those submitted have run."""
        self._closed = True
        if self._green:
            if wait:
                self._group.join()
        else:
            self._executor.shutdown(wait=wait)
