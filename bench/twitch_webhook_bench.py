"""Twitch EventSub webhook latency under a steady notification rate.

    .venv/bin/python bench/twitch_webhook_bench.py [--rate 200] [--duration 10] [--postgres]

Starts the router and the twitch collector as two ``waddlebot up`` processes
(FleetProcess; the collector forwards to the router over HTTP). By default both use
the embedded SQLite database and the in-process store; ``--postgres`` uses the test
cluster's PostgreSQL (its own database, ``waddlebot_twitch_bench``, emptied first) and
Redis, as production does. Then it sends
``--rate`` signed notifications per second (open loop: each one at its scheduled time,
from a thread pool) for ``--duration`` seconds - a mix of follows, cheers and plain chat
messages across 50 channels, signed the way Twitch signs them. It measures how long
the webhook takes to answer (target p99 < 100 ms), then waits until the forwarder has
handed everything to the router.

Prints ONE JSON object on stdout; progress goes to stderr. Both processes are stopped
at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from waddlebot.testkit import FleetProcess
from waddlebot.twitch import eventsub

log = logging.getLogger("bench.twitch")

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "twitch"
BENCH_DB = "waddlebot_twitch_bench"
SECRET = "bench-webhook-secret"
CHANNELS = 50
TARGET_P99_MS = 100.0


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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

    def send(number: int, scheduled: float) -> None:
        # http.client, not requests: on a small box the load generator's own CPU
        # (and GIL) would otherwise show up as server latency
        body, headers = notifications.build(number)
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

    total = int(rate * duration)
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
            "p50": ms(percentile(latencies, 50)),
            "p90": ms(percentile(latencies, 90)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(max(latencies) if latencies else None),
        },
        "client_start_lag_ms_p99": ms(percentile(lags, 99)),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_drained(collector: FleetProcess, expected: int, timeout: float) -> dict:
    """Wait until the forwarder handed every stored notification to the router."""
    started = time.monotonic()
    while True:
        status = collector.get("/api/twitch/status").json()["forwarder"]
        if status["pending"] == 0 or time.monotonic() - started > timeout:
            break
        time.sleep(0.25)
    forwarded = collector.get(
        "/api/twitch/events", params={"forwarded": "true", "per_page": 1}
    ).json()["total"]
    return {
        "drain_s": round(time.monotonic() - started, 2),
        "forwarded": forwarded,
        "pending": status["pending"],
        "rejected": status["rejected"],
        "all_forwarded": forwarded == expected,
    }


def postgres_database() -> str:
    """The benchmark's own database in the test cluster, created if missing, emptied."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    from waddlebot.testkit import TEST_DATABASE_URL, reset_postgres

    url = urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path="/" + BENCH_DB))
    connection = psycopg2.connect(TEST_DATABASE_URL)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        connection.close()
    reset_postgres(url)
    return url


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="notifications per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=32, help="client threads")
    parser.add_argument(
        "--postgres", action="store_true", help="PostgreSQL and Redis of the test cluster"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")

    shared = {"LOG_LEVEL": "WARNING"}
    if args.postgres:
        from waddlebot.testkit import TEST_REDIS_HOST

        shared.update(
            DATABASE_URL=postgres_database(),
            REDIS_HOST=TEST_REDIS_HOST,
            WADDLEBOT_STORE_PREFIX=f"twitch-bench-{uuid.uuid4().hex[:8]}:",
        )
    root = Path(tempfile.mkdtemp(prefix="twitch-bench-"))
    for name in ("router", "twitch"):
        (root / name).mkdir()
    router = FleetProcess(["router_module"], env=shared, data_dir=root / "router")
    collector = None
    succeeded = False
    try:
        log.info("starting the router")
        router.start()
        log.info("starting the twitch collector")
        collector = FleetProcess(
            ["twitch_module"],
            env={**shared, "ROUTER_API_URL": router.url, "TWITCH_WEBHOOK_SECRET": SECRET},
            data_dir=root / "twitch",
        ).start()
        url = collector.url + "/webhooks/twitch/eventsub"
        log.info("warming up")
        run_load(url, rate=50, duration=1, workers=8)
        wait_drained(collector, 50, timeout=30)
        log.info("sending %.0f notifications/s for %.0f s", args.rate, args.duration)
        import os

        before = {
            "router": cpu_seconds(router.process.pid),
            "twitch": cpu_seconds(collector.process.pid),
        }
        client_before, started = os.times(), time.perf_counter()
        result = run_load(url, rate=args.rate, duration=args.duration, workers=args.workers)
        wall = time.perf_counter() - started
        client_after = os.times()
        result["cpu_percent_of_one_core"] = {
            "router": round((cpu_seconds(router.process.pid) - before["router"]) / wall * 100),
            "twitch": round((cpu_seconds(collector.process.pid) - before["twitch"]) / wall * 100),
            "client": round(
                (
                    client_after.user
                    + client_after.system
                    - client_before.user
                    - client_before.system
                )
                / wall
                * 100
            ),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 1),
        }
        log.info("waiting for the forwarder to hand everything to the router")
        result["forwarding"] = wait_drained(collector, result["requests"] + 50, timeout=120)
        result["target_p99_ms"] = TARGET_P99_MS
        result["meets_target"] = (result["latency_ms"]["p99"] or 1e9) < TARGET_P99_MS
        result["setup"] = {
            "processes": "router and twitch collector, separate waddlebot up processes",
            "database": "postgresql" if args.postgres else "embedded sqlite",
            "store": "redis" if args.postgres else "in-process",
            "mix": "60% chat, 30% follow, 10% cheer over 50 channels",
        }
        print(json.dumps(result, indent=2))
        succeeded = True
        return 0
    finally:
        if collector is not None:
            collector.stop()
        router.stop()
        if succeeded:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log.error("logs kept in %s (fleet.log of each process)", root)


if __name__ == "__main__":
    sys.exit(main())
