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

import sys


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
