"""``waddlebot.serve.tame_gc``: full collections on a timer, not on the request path.

Run in a child process: the collector's settings are process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import gc, json, time, weakref
from waddlebot.serve import tame_gc

loaded = [{"n": n} for n in range(5000)]  # what an app builds at import
thread = tame_gc(interval=0.2)
frozen = gc.get_freeze_count()

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

# a cycle that lives through young collections reaches the old generation...
kept = cycle()
held = kept()
for _ in range(3):
    gc.collect(1)
del held
gc.collect(1)  # a young collection does not look at the old generation
before_timer = kept() is not None
time.sleep(1.0)  # ...and the timer's full collection frees it
print(json.dumps({
    "frozen": frozen,
    "threshold": gc.get_threshold(),
    "alive_before_timer": before_timer,
    "alive_after_timer": kept() is not None,
    "thread": thread.name, "daemon": thread.daemon, "running": thread.is_alive(),
}))
"""


def test_tame_gc_freezes_what_is_loaded_and_collects_fully_on_a_timer():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["frozen"] >= 5000
    young, middle, old = result["threshold"]
    assert (young, middle) == (700, 10) and old >= 1_000_000  # no automatic full collection
    assert result["alive_before_timer"] and not result["alive_after_timer"]
    assert result["daemon"] and result["running"] and result["thread"] == "full-gc"


def test_a_releasing_answer_frees_the_request_cycle_when_the_server_closes_it():
    import gc
    import weakref

    from waddlebot.serve import ReleasingAnswer, releasing

    class HeaderView:  # like ombott's WSGIHeaderDict: holds the environ it lives in
        def __init__(self, environ):
            self.environ = environ

    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        view = HeaderView(environ)
        environ["app.headers"] = view
        environ["probe"] = weakref.ref(view)
        start_response("200 OK", [("Content-Type", "application/json")])
        return Body([b"{}"])

    environ = {"wsgi.file_wrapper": type("FileWrapper", (), {}), "PATH_INFO": "/api/x"}
    gc.disable()
    try:
        answer = releasing(app)(environ, lambda *_: None)
        assert isinstance(answer, ReleasingAnswer)
        probe = environ["probe"]
        assert b"".join(answer) == b"{}"
        assert probe() is not None  # still in use while the server writes
        answer.close()
        assert closed == [True]
        assert environ == {"PATH_INFO": "/api/x"}  # strings stay for access logs
        assert probe() is None  # freed by reference counting, no collection ran
    finally:
        gc.enable()


def test_a_file_answer_is_left_to_the_server():
    from waddlebot.serve import releasing

    class FileWrapper:
        pass

    sent = FileWrapper()
    environ = {"wsgi.file_wrapper": FileWrapper}
    assert releasing(lambda env, start: sent)(environ, None) is sent
    assert "wsgi.file_wrapper" in environ
