"""``waddlebot.green.Background``: calls run off the caller, ``workers`` at a time, in order.

The same script runs in a plain child process (threads) and in a gevent-patched one
(greenlets); monkey-patching this test process would change every other test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey
    monkey.patch_all()
import json, logging, threading, time
from waddlebot.green import Background, gevent_patched

failures = []
class Catch(logging.Handler):
    def emit(self, record):
        failures.append(record.getMessage())
logging.getLogger("waddlebot.background").addHandler(Catch())

pool = Background(3, name="test")
lock = threading.Lock()
running, peak, started = [0], [0], []

def job(n):
    with lock:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        started.append(n)
    time.sleep(0.05)
    with lock:
        running[0] -= 1
    if n == 4:
        raise ValueError("job 4 fails")

t = time.monotonic()
for n in range(12):
    pool.submit(job, n)
submit_s = time.monotonic() - t
pool.shutdown(wait=True)
total_s = time.monotonic() - t
try:
    pool.submit(job, 99)
    after = "accepted"
except RuntimeError:
    after = "refused"
print(json.dumps({
    "green": gevent_patched(), "submit_s": submit_s, "total_s": total_s, "peak": peak[0],
    "started": started, "failures": failures, "after_shutdown": after,
}))
"""


@pytest.mark.parametrize("mode", ["threads", "gevent"])
def test_background_runs_every_call_bounded_in_order_and_logs_failures(mode):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["green"] is (mode == "gevent")
    assert sorted(seen["started"]) == list(range(12))  # every call ran
    assert seen["peak"] == 3  # never more than ``workers`` at once
    # 12 calls of 50 ms, 3 at a time: about four rounds, and the caller never waited
    assert seen["submit_s"] < 0.04
    assert 0.19 < seen["total_s"] < 2.0
    if mode == "gevent":
        assert seen["started"] == list(range(12))  # slots are handed out first come
    assert len(seen["failures"]) == 1 and "background call failed" in seen["failures"][0]
    assert seen["after_shutdown"] == "refused"
