"""Shared helpers of the WaddleBot benchmarks (bench/*_bench.py).

Standard library only at import time (``waddlebot.http`` is imported by the client
when it first sends), so a load-generator process stays light.

* processes: :class:`Processes` starts children in their own process group and kills
  every group it started on exit (also on error, Ctrl-C or SIGTERM);
  :func:`gunicorn_command`, :func:`wait_http`, :func:`free_port`;
* load: :func:`run_load` drives a closed loop from several client processes, each with
  a few threads holding one keep-alive connection spoken through
  ``waddlebot.http.Wire`` (cheaper per request than ``http.client`` and far cheaper
  than ``requests``, which matters on a 2-core box where the client competes with the
  server for CPU), and returns latencies of the requests that started and finished
  inside the measurement window;
* figures: :func:`percentile`, :func:`summary`, :func:`cpu_snapshot` /
  :func:`cpu_breakdown` (which processes used the CPU during a run).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines on stderr (stdout is reserved for the one JSON result)."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


# -- figures ----------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(latencies_s: list[float], duration_s: float, *, scale: int = 1) -> dict:
    """Throughput and latency figures of one measured run (latencies in seconds)."""
    ms = [v * 1000.0 for v in latencies_s]

    def r(v):
        return None if v is None else round(v, 2)

    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / duration_s, 1) if duration_s else None,
        "events_per_s": round(len(ms) * scale / duration_s, 1) if duration_s else None,
        "p50_ms": r(percentile(ms, 50)),
        "p90_ms": r(percentile(ms, 90)),
        "p99_ms": r(percentile(ms, 99)),
        "max_ms": r(max(ms) if ms else None),
    }


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": load,
    }


# -- machine speed -----------------------------------------------------------------------
#: the probe's fixed piece of work: about 1.5 ms of one core at this box's full speed
_PROBE_LOOPS = 40_000
#: a probe this much slower than the fastest one counts as "the box ran slow"
SLOW_FACTOR = 1.3


def _probe_work() -> int:
    total = 0
    for i in range(_PROBE_LOOPS):
        total += i * i
    return total


def _speed_probe(until: float, interval: float, results) -> None:
    """Time the same work every ``interval`` seconds, in CPU time of this thread."""
    samples = []
    while time.time() < until:
        started = time.time()
        cpu = time.thread_time()
        _probe_work()
        samples.append((started, (time.thread_time() - cpu) * 1000.0))
        time.sleep(interval)
    results.put(samples)


def speed_summary(samples: list[tuple[float, float]], since: float) -> dict:
    """How fast the box ran during a window, from :func:`_speed_probe` samples.

    The probe does the same pure-Python work each time and counts the CPU time its
    thread was charged: on a shared virtual machine that grows when the host gives the
    vCPU less (a busy hyperthread sibling, a lower clock, preemption not reported as
    steal), while waiting for the guest's own busy cores does not count. On this box an
    idle run shows two speeds, the slow one about 1.8 × the fast one for 0.2-3 s at a
    time, at random (bench/README.md, router). ``slow_seconds``: the seconds of the
    window in which most probes ran slower than ``SLOW_FACTOR`` × the fastest."""
    if not samples:
        return {}
    fastest = min(ms for _t, ms in samples)
    slow = [ms > fastest * SLOW_FACTOR for _t, ms in samples]
    by_second: dict[int, list[bool]] = {}
    for (at, _ms), is_slow in zip(samples, slow, strict=True):
        by_second.setdefault(int(at - since), []).append(is_slow)
    return {
        "probe_fastest_ms": round(fastest, 2),
        "probe_median_ms": round(percentile([ms for _t, ms in samples], 50) or 0, 2),
        "slow_fraction": round(sum(slow) / len(slow), 3),
        "slow_seconds": sorted(s for s, flags in by_second.items() if sum(flags) * 2 > len(flags)),
    }


# -- CPU accounting ---------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, utime+stime ticks) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_snapshot() -> dict[int, tuple[str, int, int]]:
    """Every process's (comm, ppid, cpu ticks) right now."""
    snap = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                snap[int(entry)] = stat
    return snap


def cpu_breakdown(
    before: dict, after: dict, seconds: float, groups: dict[str, Iterable[int]]
) -> dict:
    """CPU used between two snapshots, in cores (1.0 = one core busy), by group.

    ``groups`` maps a name to root pids; a process belongs to the group of its nearest
    listed ancestor. ``postgres`` and ``redis`` are recognised by name; the rest is
    ``other`` (other users of the machine: it should be near 0 for clean figures).
    """
    roots = {int(pid): name for name, pids in groups.items() for pid in pids}
    result: dict[str, float] = {name: 0.0 for name in groups}
    result.update({"postgres": 0.0, "redis": 0.0, "other": 0.0})
    me = os.getpid()

    def group_of(pid: int) -> str:
        seen = 0
        current = pid
        while current and seen < 64:
            if current in roots:
                return roots[current]
            info = after.get(current) or before.get(current)
            if info is None:
                break
            current = info[1]
            seen += 1
        comm = (after.get(pid) or before.get(pid) or ("",))[0]
        if comm.startswith("postgres") or comm.startswith("postmaster"):
            return "postgres"
        if comm.startswith("redis"):
            return "redis"
        return "other"

    others: dict[str, int] = {}
    for pid, (comm, _ppid, ticks) in after.items():
        if pid == me:
            continue
        used = ticks - (before[pid][2] if pid in before else 0)
        if used > 0:
            name = group_of(pid)
            result[name] = result.get(name, 0.0) + used
            if name == "other":
                others[comm] = others.get(comm, 0) + used
    figures: dict = {k: round(v / _TICK / seconds, 2) for k, v in result.items()}
    top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
    figures["other_top"] = {comm: round(t / _TICK / seconds, 2) for comm, t in top}
    return figures


# -- processes --------------------------------------------------------------------------
def code_version(key: str, *paths: str) -> dict:
    """The commit measured, and under ``key`` how many files below ``paths`` differ from it."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--", *paths).splitlines()
        return {"commit": git("rev-parse", "--short", "HEAD"), key: len(changed)}
    except Exception:  # noqa: BLE001 - informative only
        return {}


def clean_environ() -> dict:
    """This process's environment without WaddleBot's own settings (database, store,
    router, ``WADDLEBOT_*``): a bench sets those for the processes it starts."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "READ_REPLICA_URL", "REDIS_", "WADDLEBOT_", "ROUTER_"))
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Children started in their own process group; all killed on exit, whatever happens."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self._previous_handler = None

    def start(self, name: str, command: list[str], *, env: dict, cwd: str | None = None):
        """Start ``command``; its output goes to ``<log_dir>/<name>.log``."""
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child end
        try:
            child = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        self.children.append((name, child))
        log.info("started %s (pid %d)", name, child.pid)
        return child

    def logs(self, name: str, tail: int = 3000) -> str:
        """The end of a child's log."""
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, child: subprocess.Popen, timeout: float = 8.0) -> None:
        """Stop one child's process group (SIGTERM, then SIGKILL) and forget it."""
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        self.children = [(n, c) for n, c in self.children if c is not child]

    def stop_all(self, timeout: float = 8.0) -> None:
        """SIGTERM every group, then SIGKILL what is left; only groups started here."""
        for _name, child in reversed(self.children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, child in reversed(self.children):
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing", name, child.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            # leftovers of the group (a worker whose master died first)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        self.children.clear()

    def __enter__(self) -> Processes:
        # SIGTERM to the bench behaves like Ctrl-C: unwind and clean up
        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, on_term)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)


def gunicorn_command(
    app: str,
    port: int,
    *,
    chdir: str | Path,
    workers: int = 2,
    threads: int = 16,
    extra: Iterable[str] = (),
) -> list[str]:
    """``gunicorn -k gthread`` on 127.0.0.1 with the venv's gunicorn."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
    return [
        *command,
        "--chdir",
        str(chdir),
        "-k",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--backlog",
        "1024",
        "--keep-alive",
        "30",
        "--no-control-socket",
        *extra,
        app,
    ]


def wait_http(url: str, *, timeout: float = 60.0, child: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers below 500 (or raise, also when ``child`` exits)."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.1)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (e.g. a gunicorn master's workers)."""
    return sorted(p for p, (_c, ppid, _t) in cpu_snapshot().items() if ppid == pid)


# -- load generation --------------------------------------------------------------------
class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 that reconnects when dropped.

    It speaks through :class:`waddlebot.http.Wire` (the request in one write, the answer
    parsed without the ``email`` package): the load generator shares the box with what
    it measures, and ``http.client`` cost it about twice the CPU per request.
    """

    def __init__(self, port: int, headers: dict, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **headers}
        self._head_lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.wire = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; (status, answer body). Retries once on a dropped connection."""
        from waddlebot.http import Wire

        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{self._head_lines}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        for attempt in (0, 1):
            if self.wire is None:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.wire = Wire(sock)
            try:
                status, data, keep = self.wire.exchange(request, "POST")
                if not keep:
                    self.wire.close()
                    self.wire = None
                return status, data
            except Exception:  # noqa: BLE001 - dropped or garbled: reconnect once
                if self.wire is not None:
                    self.wire.close()
                self.wire = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


#: request factory: (process index, thread index, sequence number) -> (path, body bytes)
MakeRequest = Callable[[int, int, int], tuple[str, bytes]]
#: answer check: (status, body) -> dict of extra numbers to keep (or raises nothing)
CheckAnswer = Callable[[int, bytes], dict | None]


def _client_process(
    index: int,
    threads: int,
    port: int,
    headers: dict,
    make_request: MakeRequest,
    check_answer: CheckAnswer | None,
    measure_from: float,
    stop_at: float,
    results,
    pace: tuple[float, float] = (0.0, 0.0),
) -> None:
    lock = threading.Lock()
    latencies: list[float] = []
    extras: list[dict] = []
    counts = {"ok": 0, "errors": 0, "warmup": 0}
    statuses: dict[str, int] = {}
    first_error: list[str] = []

    def run(thread: int) -> None:
        client = Client(port, headers)
        seq = 0
        local_lat, local_extra = [], []
        local = {"ok": 0, "errors": 0, "warmup": 0}
        local_status: dict[str, int] = {}
        # paced (pace = seconds between this thread's requests, seconds between two
        # threads' first requests): a fixed schedule, latency counted from the scheduled
        # time, so a slow answer that delays the next request is charged to the server
        interval, stagger = pace
        first_at = time.time() + stagger * (index * threads + thread)
        while True:
            path, body = make_request(index, thread, seq)
            if interval > 0:
                scheduled = first_at + seq * interval
                delay = scheduled - time.time()
                if delay > 0:
                    time.sleep(delay)
            seq += 1
            started = time.time() if interval <= 0 else scheduled
            if started >= stop_at:
                break
            sent = time.time()  # later than scheduled if this client was late itself
            try:
                status, data = client.post(path, body)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                local["errors"] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
                continue
            ended = time.time()
            key = str(status)
            local_status[key] = local_status.get(key, 0) + 1
            if status != 200:
                local["errors"] += 1
                if not first_error:
                    first_error.append(f"HTTP {status}: {data[:300]!r}")
                continue
            if started < measure_from or ended > stop_at:
                local["warmup"] += 1
                continue
            local["ok"] += 1
            local_lat.append(ended - started)
            if check_answer is not None:
                extra = check_answer(status, data)
                if extra is not None:
                    extra["latency_s"] = ended - started
                    extra["at_s"] = started - measure_from  # when, in the measured window
                    extra["send_lag_s"] = sent - started  # paced: the client's own lateness
                    local_extra.append(extra)
        with lock:
            latencies.extend(local_lat)
            extras.extend(local_extra)
            for k, v in local.items():
                counts[k] += v
            for k, v in local_status.items():
                statuses[k] = statuses.get(k, 0) + v

    workers = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put(
        {
            "latencies": latencies,
            "extras": extras,
            "counts": counts,
            "statuses": statuses,
            "first_error": first_error[0] if first_error else None,
        }
    )


def run_load(
    *,
    port: int,
    headers: dict,
    make_request: MakeRequest,
    processes: int,
    threads: int,
    warmup_s: float,
    measure_s: float,
    check_answer: CheckAnswer | None = None,
    on_measure: Callable[[], None] | None = None,
    on_measure_end: Callable[[], None] | None = None,
    rate: float = 0.0,
    speed_interval: float = 0.1,
) -> dict:
    """Closed-loop load from ``processes`` × ``threads`` connections.

    With ``rate`` > 0 the load is paced instead: ``rate`` requests per second in total,
    on a fixed schedule spread over the connections, latency measured from each
    request's scheduled time (there must be enough connections to keep up).

    Requests that start during the first ``warmup_s`` seconds are not measured; the
    measured window is the next ``measure_s`` seconds. ``on_measure`` runs in this
    process when the window opens (e.g. to start a profiler). Returns the latencies
    (seconds) of the measured requests, the extras ``check_answer`` kept, counts and
    the CPU breakdown is left to the caller. A probe process times a fixed piece of
    work every ``speed_interval`` seconds meanwhile (``machine_speed``, see
    :func:`speed_summary`): a run on a box that was slowed down shows it.
    """
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 0.3
    measure_from = start + warmup_s
    stop_at = measure_from + measure_s
    children = [
        context.Process(
            target=_client_process,
            args=(
                i,
                threads,
                port,
                headers,
                make_request,
                check_answer,
                measure_from,
                stop_at,
                results,
                (processes * threads / rate, 1.0 / rate) if rate > 0 else (0.0, 0.0),
            ),
            daemon=True,
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    speeds = context.Queue()
    prober = context.Process(
        target=_speed_probe, args=(stop_at, speed_interval, speeds), daemon=True
    )
    prober.start()
    try:
        delay = measure_from - time.time()
        if delay > 0:
            time.sleep(delay)
        window_started = cpu_snapshot(), time.time()
        if on_measure is not None:
            on_measure()
        # a snapshot a second, to see CPU per event second by second (the host's slow
        # spells come and go within a run: the fast seconds show the code's own cost)
        per_second = [(window_started[1], window_started[0])]
        while time.time() < stop_at - 0.05:
            next_at = min(per_second[-1][0] + 1.0, stop_at)
            time.sleep(max(0.0, next_at - time.time()))
            per_second.append((time.time(), cpu_snapshot()))
        window_ended = per_second[-1][1], per_second[-1][0]
        if on_measure_end is not None:
            on_measure_end()
        collected = [results.get(timeout=60 + measure_s) for _ in children]
        speed_samples = [x for x in speeds.get(timeout=30) if x[0] >= measure_from]
    finally:
        prober.join(5)
        if prober.is_alive():
            prober.kill()
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
    merged = {
        "latencies": [],
        "extras": [],
        "counts": {"ok": 0, "errors": 0, "warmup": 0},
        "statuses": {},
        "first_error": None,
        "measure_s": measure_s,
        "cpu_window": (window_started, window_ended),
        "client_pids": [c.pid for c in children],
        "probe_pid": prober.pid,
        "cpu_per_second": per_second,
        "measure_from": measure_from,
        "machine_speed": speed_summary(speed_samples, measure_from),
    }
    for part in collected:
        merged["latencies"].extend(part["latencies"])
        merged["extras"].extend(part["extras"])
        for k, v in part["counts"].items():
            merged["counts"][k] += v
        for k, v in part["statuses"].items():
            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
        merged["first_error"] = merged["first_error"] or part["first_error"]
    return merged


# -- profiles ---------------------------------------------------------------------------
def pyspy_command(
    pid: int, output: Path, seconds: float, *, mode: str = "gil", rate: int = 100
) -> list[str]:
    """``py-spy record`` of ``pid`` in collapsed-stack (raw) form, without line numbers.

    ``mode``: ``gil`` samples only the thread holding the GIL (where a GIL-bound worker
    spends its CPU), ``idle`` samples every thread, waiting ones too (wall-clock view:
    where requests wait), ``active`` is py-spy's default.
    """
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [
        str(py_spy) if py_spy.exists() else "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nolineno",
        "--output",
        str(output),
    ]
    if mode == "idle":
        # pausing the process for each sample of every thread costs too much and the
        # stacks of waiting threads are stable anyway; CPU samples stay blocking (a
        # racing read mis-attributes them)
        command.append("--nonblocking")
    if mode == "gil":
        command.append("--gil")
    elif mode == "idle":
        command.append("--idle")
    return command


def _short_frame(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py)`` → ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


#: leaf frames of a thread with nothing to do (an idle pool thread, the accept loop)
IDLE_LEAVES = frozenset(
    {
        "_worker (concurrent/futures/thread.py)",
        "EpollSelector.select (selectors.py)",
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
    }
)


#: frames every request passes through (thread pool, gunicorn, ombott, py4web wrappers):
#: left out of the "total" ranking, where they would fill the top rows at ~100%
PLUMBING = (
    "(threading.py)",
    "(concurrent/futures/thread.py)",
    "(ombott/",
    "action.catch_errors.<locals>.wrapper (py4web/core.py)",
    "action.uses.<locals>.decorator.<locals>.wrapper (py4web/core.py)",
    "json_errors.<locals>.wrapper (waddlebot/web.py)",
    "ThreadWorker.handle (gunicorn/workers/gthread.py)",
    "ThreadWorker.handle_request (gunicorn/workers/gthread.py)",
)


def collapsed_top(paths: Iterable[Path], n: int = 15, *, drop_idle: bool = True) -> dict:
    """Top frames by self and total samples of py-spy raw (collapsed) files.

    With ``drop_idle``, samples of threads waiting for work (:data:`IDLE_LEAVES`) are
    left out, so percentages are of the time threads spent on requests.
    """
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    dropped = 0
    for path in paths:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            weight = int(count)
            frames = [_short_frame(f) for f in stack.split(";") if f]
            if not frames:
                continue
            if drop_idle and frames[-1] in IDLE_LEAVES:
                dropped += weight
                continue
            samples += weight
            self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + weight
            for frame in set(frames):
                total_counts[frame] = total_counts.get(frame, 0) + weight

    def top(counts, skip=()):
        ranked = sorted(
            ((f, c) for f, c in counts.items() if not any(p in f for p in skip)),
            key=lambda kv: -kv[1],
        )[:n]
        return [
            {"frame": frame, "samples": c, "pct": round(100.0 * c / samples, 1) if samples else 0}
            for frame, c in ranked
        ]

    return {
        "samples": samples,
        "idle_samples_dropped": dropped,
        "self": top(self_counts),
        "total": top(total_counts, PLUMBING),
    }
