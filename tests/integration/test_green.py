"""``waddlebot.green``: under gevent, psycopg2 waits without stopping other greenlets.

Run in a child process (monkey-patching the test process would change every other
test): one greenlet holds a PostgreSQL query open (``pg_sleep``) while another checks,
mid-query, whether it could run at all. Without the wait callback libpq blocks the
whole process, so the second greenlet only runs once the query is over.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from waddlebot.testkit import TEST_DATABASE_URL

pytestmark = pytest.mark.integration

SCRIPT = r"""
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent, psycopg2
from waddlebot.green import cooperate, gevent_patched

cooperated = cooperate() if sys.argv[2] == "cooperate" else False
connection = psycopg2.connect(sys.argv[1].replace("postgres://", "postgresql://", 1))
connection.autocommit = True

def slow_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.5), 1")
        return cursor.fetchone()[1]

def meanwhile(query):
    gevent.sleep(0.05)
    return not query.ready()  # ran while the query was still waiting

query = gevent.spawn(slow_query)
other = gevent.spawn(meanwhile, query)
gevent.joinall([query, other], raise_error=True)
print(json.dumps({"patched": gevent_patched(), "cooperated": cooperated,
                  "answer": query.value, "ran_during_query": other.value}))
"""


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, TEST_DATABASE_URL, mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_under_gevent_a_waiting_query_lets_other_greenlets_run():
    seen = _run("cooperate")
    assert seen == {"patched": True, "cooperated": True, "answer": 1, "ran_during_query": True}


def test_without_the_wait_callback_libpq_blocks_every_greenlet():
    """The control: the check above can fail, and does without :func:`cooperate`."""
    seen = _run("plain")
    assert seen["answer"] == 1
    assert seen["ran_during_query"] is False


def test_outside_gevent_nothing_changes():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import psycopg2.extensions; from waddlebot.green import cooperate; "
            "print(cooperate(), psycopg2.extensions.get_wait_callback())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False", "None"], done.stderr
