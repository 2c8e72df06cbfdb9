"""Twitch EventSub webhook latency under a steady notification rate.

    .venv/bin/python bench/twitch_webhook_bench.py [--rate 200] [--duration 10]
        [--mode gunicorn|up] [--postgres] [--workers 2 --threads 8] [--busy N]
        [--profile DIR [--profile-mode idle|gil|active]]

``--mode gunicorn`` (the default) runs the router and the twitch collector as deployed
(twitch_module/Dockerfile, k8s/base/*/configmap.yaml): each under gunicorn
``-k gthread`` with 2 workers × 8 threads, the collector loaded the way the image loads
it (``--pythonpath twitch_module wsgi:application``), migrations done beforehand in one
step and off in the serving processes, on the test cluster's PostgreSQL (its own
database, ``waddlebot_twitch_bench``, emptied first; the replica for the router's
reads) and Redis. ``--mode up`` runs both as ``waddlebot up`` processes (the stdlib
threaded server), on the embedded SQLite database and the in-process store, or on
PostgreSQL and Redis with ``--postgres``. Every process runs at normal priority;
``--busy N`` adds N CPU-bound processes during the load, for contention that can be
reproduced.

Then it sends ``--rate`` signed notifications per second (open loop: each one at its
scheduled time from a thread pool, on a new connection as Twitch's deliveries come)
for ``--duration`` seconds - a mix of follows, cheers and plain chat messages across
50 channels, signed the way Twitch signs them. It measures how long the webhook takes
to answer (target p99 < 100 ms), then waits until the forwarder has handed everything
to the router and checks that every notification was forwarded exactly once (one
``twitch_events`` row per message id, all forwarded, and the router holding one event
per id). With ``--profile DIR`` py-spy records the collector's workers during the load
(``idle``: every thread, waiting ones too - where a request spends its wall time;
``gil``: the thread holding the GIL - where the CPU goes) and the top frames go into
the JSON; py-spy slows the collector, so take figures from a run
without it.

Prints ONE JSON object on stdout; progress goes to stderr. Every process it started is
stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as bench  # noqa: E402

from waddlebot.twitch import eventsub  # noqa: E402

log = logging.getLogger("bench.twitch")

FIXTURES = bench.REPO_DIR / "tests" / "fixtures" / "twitch"
BENCH_DB = "waddlebot_twitch_bench"
SECRET = "bench-webhook-secret"
API_KEY = "bench-key"
CHANNELS = 50
TARGET_P99_MS = 100.0
#: what the production manifests run (k8s/base/twitch-collector/configmap.yaml, Dockerfile)
DEPLOYED_WORKERS = 2
DEPLOYED_THREADS = 8


class Notifications:
    """Documented Twitch payloads, varied per request (channel, user, message id)."""

    def __init__(self):
        self.templates = {
            name: json.loads((FIXTURES / f"{name}.json").read_text())
            for name in ("channel.follow", "channel.cheer", "channel.chat.message")
        }
        self.mix = ["channel.chat.message"] * 6 + ["channel.follow"] * 3 + ["channel.cheer"]

    def build(self, number: int) -> tuple[bytes, dict]:
        """The body and signed headers of notification ``number``."""
        kind = self.mix[number % len(self.mix)]
        payload = json.loads(json.dumps(self.templates[kind]))
        channel = str(100000 + number % CHANNELS)
        user = str(200000 + random.randrange(5000))
        event = payload["event"]
        event["broadcaster_user_id"] = channel
        if kind == "channel.chat.message":
            event.update(chatter_user_id=user, message_id=str(uuid.uuid4()))
            event["message"] = {"text": f"hello chat {number}", "fragments": []}
        else:
            event["user_id"] = user
        body = json.dumps(payload).encode()
        headers = eventsub.signed_headers(
            SECRET,
            body,
            subscription_type=kind,
            subscription_version=payload["subscription"]["version"],
        )
        return body, headers


def run_load(url: str, *, rate: float, duration: float, workers: int) -> dict:
    """Send ``rate`` notifications/s for ``duration`` s; latencies of the answers."""
    notifications = Notifications()
    latencies: list[float] = []
    lags: list[float] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()
    target = urlsplit(url)
    # built ahead: signing and JSON are the client's CPU, not the server's latency
    total = int(rate * duration)
    prepared = [notifications.build(number) for number in range(total)]

    def send(number: int, scheduled: float) -> None:
        # http.client, not requests: on a small box the load generator's own CPU
        # (and GIL) would otherwise show up as server latency
        body, headers = prepared[number]
        started = time.perf_counter()
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        with lock:
            statuses[str(status)] += 1
            latencies.append(elapsed)
            lags.append(started - scheduled)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        begin = time.perf_counter()
        for number in range(total):
            scheduled = begin + number / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, number, scheduled)
        sent_in = time.perf_counter() - begin
    elapsed = time.perf_counter() - begin

    def ms(value):
        return None if value is None else round(value * 1000, 2)

    return {
        "requests": total,
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(total / sent_in, 1),
        "elapsed_s": round(elapsed, 2),
        "status_counts": dict(statuses),
        "latency_ms": {
            "p50": ms(bench.percentile(latencies, 50)),
            "p90": ms(bench.percentile(latencies, 90)),
            "p99": ms(bench.percentile(latencies, 99)),
            "max": ms(max(latencies) if latencies else None),
        },
        "client_start_lag_ms_p99": ms(bench.percentile(lags, 99)),
    }


# -- the two services -------------------------------------------------------------------
class Service:
    """One started app: its base URL and the root pid of its processes."""

    def __init__(self, url: str, pid: int, stop):
        self.url = url
        self.pid = pid
        self.stop = stop

    def get(self, path: str, **params) -> dict:
        """GET a keyed JSON endpoint."""
        query = f"?{urlencode(params)}" if params else ""
        request = urllib.request.Request(self.url + path + query, headers={"X-API-Key": API_KEY})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


def gunicorn_service(
    procs: bench.Processes, app: str, health: str, env: dict, args
) -> tuple[Service, subprocess.Popen]:
    """``app`` under gunicorn as the image runs it (``--pythonpath <app> wsgi:application``)."""
    port = bench.free_port()
    child = procs.start(
        app,
        bench.gunicorn_command(
            "wsgi:application",
            port,
            chdir=bench.REPO_DIR,
            workers=args.workers,
            threads=args.threads,
            extra=("--pythonpath", str(bench.REPO_DIR / app)),
        ),
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    bench.wait_http(url + health, child=child)
    # health answers once one worker is up; the others are still importing
    deadline = time.monotonic() + 60
    while len(bench.child_pids(child.pid)) < args.workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    if child.poll() is not None:
        raise RuntimeError(f"{app} exited: {procs.logs(app)}")
    return Service(url, child.pid, lambda: procs.stop(child)), child


def up_service(app: str, env: dict, data_dir: Path) -> Service:
    """``app`` as a ``waddlebot up`` process (stdlib threaded server)."""
    from waddlebot.testkit import FleetProcess

    fleet = FleetProcess([app], env=env, data_dir=data_dir, api_key=API_KEY).start()
    return Service(fleet.url, fleet.process.pid, fleet.stop)


# -- the database -----------------------------------------------------------------------
def postgres_urls() -> tuple[str, str]:
    """Primary and replica URLs of the benchmark's own database, created and emptied."""
    from waddlebot.testkit import (
        TEST_DATABASE_URL,
        TEST_REPLICA_URL,
        create_database,
        database_url,
        reset_postgres,
        wait_for_replica,
    )

    primary = create_database(BENCH_DB, if_missing=True)
    replica = database_url(BENCH_DB, TEST_REPLICA_URL)
    reset_postgres(primary)
    wait_for_replica(TEST_DATABASE_URL, TEST_REPLICA_URL)
    return primary, replica


def exactly_once(collector: Service, expected: int, store_prefix: str | None) -> dict:
    """Each notification stored once, forwarded, in one attempt; the router saw each id.

    From the collector's own listing (every stored row), and with Redis from the
    router's de-duplication marks (one ``router:seen:twitch:<event id>`` per event it
    admitted): a resend would show as a second attempt, a loss as a missing mark.
    """
    ids: collections.Counter = collections.Counter()
    forwarded = single_attempt = 0
    page = 1
    while True:
        listing = collector.get("/api/twitch/events", page=page, per_page=500)
        for item in listing["items"]:
            ids[item["message_id"]] += 1
            forwarded += bool(item["forwarded"])
            single_attempt += item["forward_attempts"] == 1
        if page * 500 >= listing["total"]:
            break
        page += 1
    figures = {
        "stored_rows": sum(ids.values()),
        "distinct_message_ids": len(ids),
        "forwarded_rows": forwarded,
        "forwarded_in_one_attempt": single_attempt,
    }
    once = figures["stored_rows"] == len(ids) == forwarded == single_attempt == expected
    if store_prefix is not None:
        import redis

        from waddlebot.testkit import TEST_REDIS_HOST

        client = redis.Redis(host=TEST_REDIS_HOST, socket_timeout=5)
        marks = sum(
            1 for _ in client.scan_iter(match=f"{store_prefix}router:seen:twitch:*", count=5000)
        )
        figures["router_dedupe_marks"] = marks
        once = once and marks == expected
    figures["exactly_once"] = once
    return figures


def wait_drained(collector: Service, expected: int, timeout: float) -> dict:
    """Wait until the forwarder handed every stored notification to the router."""
    started = time.monotonic()
    while True:
        status = collector.get("/api/twitch/status")["forwarder"]
        if status["pending"] == 0 or time.monotonic() - started > timeout:
            break
        time.sleep(0.25)
    forwarded = collector.get("/api/twitch/events", forwarded="true", per_page=1)["total"]
    return {
        "drain_s": round(time.monotonic() - started, 2),
        "forwarded": forwarded,
        "pending": status["pending"],
        "rejected": status["rejected"],
        "all_forwarded": forwarded == expected,
    }


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user ... steal), in ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor gave to other guests between two readings."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return round(100.0 * spent[7] / max(1, sum(spent)), 1)


def clean_store(prefix: str) -> None:
    """Drop this run's keys from Redis."""
    from waddlebot.testkit import clear_store_prefix

    try:
        removed = clear_store_prefix(prefix)
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("could not clean store keys: %s", exc)
        return
    log.debug("removed %d store keys with prefix %s", removed, prefix)


# -- main -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="notifications per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=32, help="client threads")
    parser.add_argument(
        "--mode",
        choices=("gunicorn", "up"),
        default="gunicorn",
        help="gunicorn as deployed (PostgreSQL + Redis), or waddlebot up processes",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="with --mode up: PostgreSQL and Redis"
    )
    parser.add_argument("--workers", type=int, default=DEPLOYED_WORKERS, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=DEPLOYED_THREADS, help="gunicorn threads")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="CPU-bound processes (normal priority) spinning during the load: contention",
    )
    parser.add_argument("--profile", type=Path, help="py-spy the collector into this folder")
    parser.add_argument(
        "--profile-mode",
        choices=("idle", "gil", "active"),
        default="idle",
        help="py-spy: every thread (wall time), the GIL holder (CPU), or running threads",
    )
    args = parser.parse_args(argv)
    bench.setup_logging()
    real = args.mode == "gunicorn" or args.postgres

    work = Path(tempfile.mkdtemp(prefix="twitch-bench-"))
    prefix = f"twitch-bench-{uuid.uuid4().hex[:8]}:"
    base_env = bench.clean_environ()
    shared = {
        "WADDLEBOT_API_KEYS": API_KEY,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    database_url = None
    result: dict = {
        "benchmark": "twitch_webhook",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": bench.machine(),
        "code": bench.code_version(
            "uncommitted_twitch_lib_files", "twitch_module", "libs/waddlebot"
        ),
        "setup": {
            "mode": args.mode,
            "server": (
                f"gunicorn gthread, {args.workers} workers x {args.threads} threads each"
                if args.mode == "gunicorn"
                else "waddlebot up (stdlib threaded WSGI server)"
            ),
            "database": "postgresql" if real else "embedded sqlite",
            "store": "redis" if real else "in-process",
            "mix": "60% chat, 30% follow, 10% cheer over 50 channels",
            "priority": f"nice {os.nice(0)}",
            "busy_processes": args.busy,
            "profiled": args.profile is not None,
        },
    }
    procs = bench.Processes(work / "logs")
    services: list[Service] = []
    succeeded = False
    try:
        with procs:
            if real:
                from waddlebot.testkit import TEST_REDIS_HOST

                database_url, replica_url = postgres_urls()
                shared.update(
                    DATABASE_URL=database_url,
                    READ_REPLICA_URL=replica_url,
                    REDIS_HOST=TEST_REDIS_HOST,
                    WADDLEBOT_STORE_PREFIX=prefix,
                )
            if args.mode == "gunicorn":
                from waddlebot.migrate import migrate_all

                env = {
                    **base_env,
                    **shared,
                    "WADDLEBOT_DATA_DIR": str(work / "data"),
                    # as the image sets it: the apps come from this checkout
                    "WADDLEBOT_APPS_FOLDER": str(bench.REPO_DIR),
                }
                log.info("migrating (one step, as the migration Job does)")
                migrate_all({**env, "WADDLEBOT_MIGRATE": "true"})
                env["WADDLEBOT_MIGRATE"] = "false"
                log.info("starting the router under gunicorn")
                router, _ = gunicorn_service(
                    procs, "router_module", "/api/router/health", env, args
                )
                services.append(router)
                log.info("starting the twitch collector under gunicorn")
                collector, _ = gunicorn_service(
                    procs,
                    "twitch_module",
                    "/api/twitch/health",
                    {**env, "ROUTER_API_URL": router.url, "TWITCH_WEBHOOK_SECRET": SECRET},
                    args,
                )
                services.append(collector)
            else:
                for name in ("router", "twitch"):
                    (work / name).mkdir()
                log.info("starting the router (waddlebot up)")
                router = up_service("router_module", shared, work / "router")
                services.append(router)
                log.info("starting the twitch collector (waddlebot up)")
                collector = up_service(
                    "twitch_module",
                    {**shared, "ROUTER_API_URL": router.url, "TWITCH_WEBHOOK_SECRET": SECRET},
                    work / "twitch",
                )
                services.append(collector)
            url = collector.url + "/webhooks/twitch/eventsub"
            log.info("warming up")
            warm = run_load(url, rate=50, duration=2, workers=8)
            wait_drained(collector, warm["requests"], timeout=60)

            profilers = []
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for pid in bench.child_pids(collector.pid) or [collector.pid]:
                    out = args.profile / f"twitch_{pid}.txt"
                    profilers.append(
                        (
                            out,
                            procs.start(
                                f"py-spy-{pid}",
                                bench.pyspy_command(
                                    pid,
                                    out,
                                    args.duration,
                                    mode=args.profile_mode,
                                    rate=50 if args.profile_mode == "idle" else 100,
                                ),
                                env=base_env,
                            ),
                        )
                    )
            spinners = [
                procs.start(f"busy-{n}", [sys.executable, "-c", "while True: pass"], env=base_env)
                for n in range(args.busy)
            ]
            log.info("sending %.0f notifications/s for %.0f s", args.rate, args.duration)
            groups = {
                "router": [router.pid],
                "twitch": [collector.pid],
                "busy": [spinner.pid for spinner in spinners],
            }
            before, started = bench.cpu_snapshot(), time.perf_counter()
            client_before, machine_before = os.times(), cpu_times()
            load_before = os.getloadavg()[0]
            load = run_load(url, rate=args.rate, duration=args.duration, workers=args.clients)
            wall = time.perf_counter() - started
            after = bench.cpu_snapshot()
            for spinner in spinners:
                procs.stop(spinner)
            result.update(load)
            result["cpu_cores_used"] = bench.cpu_breakdown(before, after, wall, groups)
            # cpu_breakdown leaves out the calling process: the client is this one
            client_after = os.times()
            result["cpu_cores_used"]["client"] = round(
                (
                    client_after.user
                    + client_after.system
                    - client_before.user
                    - client_before.system
                )
                / wall,
                2,
            )
            # on a VM, time stolen by other guests shows up as latency here
            result["cpu_steal_percent"] = steal_percent(machine_before, cpu_times())
            result["load_average_1m"] = {
                "before": round(load_before, 2),
                "after": round(os.getloadavg()[0], 2),
            }
            log.info("waiting for the forwarder to hand everything to the router")
            expected = warm["requests"] + load["requests"]
            result["forwarding"] = wait_drained(collector, expected, timeout=120)
            result["forwarding"].update(exactly_once(collector, expected, prefix if real else None))
            for _out, spy in profilers:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    log.warning("py-spy %d did not finish", spy.pid)
            if profilers:
                result["profile"] = {
                    "files": [str(out) for out, _ in profilers],
                    **bench.collapsed_top([out for out, _ in profilers], 20),
                }
            result["target_p99_ms"] = TARGET_P99_MS
            result["meets_target"] = (result["latency_ms"]["p99"] or 1e9) < TARGET_P99_MS
            succeeded = True
    except KeyboardInterrupt:
        log.error("interrupted; everything started was stopped")
    finally:
        for service in reversed(services):
            if args.mode == "up":
                service.stop()
        if real:
            clean_store(prefix)
        if succeeded:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log.error("logs kept in %s", work)
    print(json.dumps(result, indent=2))
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
