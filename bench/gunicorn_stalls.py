"""gunicorn config for the benchmarks: report when a gevent worker's hub stops turning.

    gunicorn -c bench/gunicorn_stalls.py ...   (WADDLEBOT_BENCH_STALLS=<dir>)

Under the gevent worker every request of a process is a greenlet on one thread; if
that thread does not get back to the hub for a while (a greenlet computing, a call
that blocks without yielding, the process not scheduled), every request in flight in
that process waits. A heartbeat greenlet stamps the time every ``TICK_S``; an OS
thread (not a greenlet: it must run while the hub is stuck) checks the stamp, and
while it is older than ``STALL_S`` samples what the main thread is running. When the
hub turns again one JSON line goes to ``<dir>/stalls-<pid>.jsonl``: when, how long,
how much CPU the main thread got meanwhile (near the duration: it was computing;
near zero: it was waiting or not scheduled), and the sampled stacks.

gevent's own monitor thread (``GEVENT_MONITOR_THREAD_ENABLE``) fails here: it formats
the locals of every greenlet, and a finished request's object has no environ left.
Benchmark instrumentation only; the router does not load it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

TICK_S = 0.002
STALL_S = 0.015
SAMPLE_S = 0.003


def _main_thread_cpu(tid: int) -> float:
    """CPU seconds (user + system) of one thread of this process."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _stack(frame) -> str:
    """``file:function:line;…`` from the outermost frame in, our code and gevent kept."""
    parts = []
    for entry in traceback.extract_stack(frame, limit=40):
        path = entry.filename
        short = path.split("site-packages/")[-1] if "site-packages/" in path else path
        short = short.replace(os.getcwd() + "/", "")
        parts.append(f"{short}:{entry.name}:{entry.lineno}")
    return ";".join(parts[-14:])


def post_worker_init(worker) -> None:
    folder = os.environ.get("WADDLEBOT_BENCH_STALLS")
    if not folder or "gevent" not in sys.modules:
        return
    import threading

    import gevent
    from gevent import monkey

    start_thread = monkey.get_original("_thread", "start_new_thread")
    real_sleep = monkey.get_original("time", "sleep")
    get_ident = monkey.get_original("_thread", "get_ident")
    main_ident = get_ident()
    main_tid = threading.get_native_id()
    stamp = [time.perf_counter()]
    path = os.path.join(folder, f"stalls-{os.getpid()}.jsonl")

    def heartbeat() -> None:
        while True:
            stamp[0] = time.perf_counter()
            gevent.sleep(TICK_S)

    def watch() -> None:
        out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        while True:
            real_sleep(SAMPLE_S)
            last = stamp[0]
            if time.perf_counter() - last < STALL_S:
                continue
            began_wall = time.time() - (time.perf_counter() - last)
            cpu_before = _main_thread_cpu(main_tid)
            stacks: dict[str, int] = {}
            while stamp[0] == last:
                frame = sys._current_frames().get(main_ident)
                if frame is not None:
                    key = _stack(frame)
                    stacks[key] = stacks.get(key, 0) + 1
                    del frame
                real_sleep(SAMPLE_S)
            ended = time.perf_counter()
            record = {
                "pid": os.getpid(),
                "at": round(began_wall, 4),
                "ms": round((ended - last) * 1000, 1),
                "main_thread_cpu_ms": round((_main_thread_cpu(main_tid) - cpu_before) * 1000),
                "stacks": sorted(stacks.items(), key=lambda kv: -kv[1])[:5],
            }
            out.write(json.dumps(record) + "\n")

    gevent.spawn(heartbeat)
    start_thread(watch, ())
