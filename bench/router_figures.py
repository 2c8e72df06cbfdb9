"""The router benchmark's figures from a run's raw results (bench/router_bench.py).

What the load generator measured becomes the JSON's figures here: the router's own
overhead and where its slow requests fall, its CPU per event second by second, the
gevent hub stalls of ``--stalls``, PostgreSQL's counters per event.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import _common as bench

#: the issue's targets: (a) plain chat, (b) commands and the router's overhead p99
#: at that rate, (c) batches; events per second unless said
TARGETS = {"a": 1500, "b": 600, "b_overhead_p99_ms": 20, "c": 5000}


def tally(extras: list[dict], key: str) -> dict:
    counts: dict = {}
    for extra in extras:
        value = extra.get(key)
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def db_counters(primary_url: str, replica_url: str) -> dict:
    """PostgreSQL's own counters for the benchmark database (sessions, transactions)."""
    import psycopg2

    counters = {}
    for side, url in (("primary", primary_url), ("replica", replica_url)):
        try:
            connection = psycopg2.connect(url)
            try:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database"
                        " WHERE datname = current_database()"
                    )
                    sessions, commits, rollbacks = cursor.fetchone()
            finally:
                connection.close()
        except Exception:  # noqa: BLE001 - informative only
            continue
        counters[side] = {"sessions": sessions, "commits": commits, "rollbacks": rollbacks}
    return counters


def db_per_event(before: dict, after: dict, events: float) -> dict:
    """Sessions opened and transactions per measured event (our own probes excluded)."""
    figures = {}
    for side in ("primary", "replica"):
        if side not in before or side not in after or not events:
            continue
        for key in ("sessions", "commits", "rollbacks"):
            # the probe itself opens one session and runs one transaction
            delta = after[side][key] - before[side][key] - (1 if key != "rollbacks" else 0)
            figures[f"{side}_{key}_per_event"] = round(max(0, delta) / events, 2)
    return figures


def overhead_figures(figures: dict, raw: dict) -> None:
    """Module time and router overhead (latency − module time) percentiles of case b."""
    overhead = [e["latency_s"] * 1000 - e["module_ms"] for e in raw["extras"]]
    module_ms = [e["module_ms"] for e in raw["extras"]]
    figures["module_time_p50_ms"] = round(bench.percentile(module_ms, 50) or 0, 2)
    figures["module_time_p99_ms"] = round(bench.percentile(module_ms, 99) or 0, 2)
    figures["router_overhead_p50_ms"] = round(bench.percentile(overhead, 50) or 0, 2)
    figures["router_overhead_p99_ms"] = round(bench.percentile(overhead, 99) or 0, 2)
    # where the slow ones fall: spread over the window (the box is short of CPU) or
    # bunched in a few seconds (a pause somewhere: GC, a lock, the database)
    slow: dict[int, int] = {}
    for e, o in zip(raw["extras"], overhead, strict=True):
        if o > TARGETS["b_overhead_p99_ms"]:
            second = int(e["at_s"])
            slow[second] = slow.get(second, 0) + 1
    # a paced request sent late was late on the client's side (the load generator was
    # not scheduled in time), not the router's: how many of the slow ones were
    late = [
        e["send_lag_s"] * 1000
        for e, o in zip(raw["extras"], overhead, strict=True)
        if o > TARGETS["b_overhead_p99_ms"]
    ]
    figures["router_cpu_ms_per_event"] = cpu_per_event_by_second(raw)
    slow_box = set(raw["machine_speed"].get("slow_seconds", ()))
    figures["over_target_by_second"] = {
        "over_target": sum(slow.values()),
        # in a second when the host gave this box less CPU (bench._common.speed_summary)
        "of_which_box_ran_slow": sum(n for s, n in slow.items() if s in slow_box),
        "of_which_sent_5ms_late": sum(1 for lag in late if lag > 5),
        "client_send_lag_p99_ms": round(
            bench.percentile([e["send_lag_s"] * 1000 for e in raw["extras"]], 99) or 0, 2
        ),
        "worst_seconds": [
            {"second": s, "requests": n} for s, n in sorted(slow.items(), key=lambda kv: -kv[1])[:3]
        ],
    }


def cpu_per_event_by_second(raw: dict) -> dict:
    """The router's CPU per event over the window and second by second.

    The host slows this VM down for seconds at a time (``machine_speed``), and the same
    work then costs up to 1.8 × the CPU time: the whole-window figure moves from run to
    run with the host. The quarter of seconds in which the router spent least per event
    (``fastest_quarter``) is its cost when the box ran at full speed, which is what a
    change to the code moves.
    """
    snapshots = raw["cpu_per_second"]
    starts = sorted(e["at_s"] for e in raw["extras"])
    per_second, total_cpu = [], 0.0
    for (t0, before), (t1, after) in zip(snapshots, snapshots[1:], strict=False):
        cores = bench.cpu_breakdown(before, after, t1 - t0, raw["groups"])["router"]
        lo, hi = t0 - raw["measure_from"], t1 - raw["measure_from"]
        events = bisect.bisect_left(starts, hi) - bisect.bisect_left(starts, lo)
        total_cpu += cores * (t1 - t0)
        if events:
            per_second.append(cores * (t1 - t0) * 1000.0 / events)
    if not per_second or not starts:
        return {}
    per_second.sort()
    quarter = per_second[: max(1, len(per_second) // 4)]
    return {
        "window": round(total_cpu * 1000.0 / len(starts), 3),
        "fastest_quarter": round(sum(quarter) / len(quarter), 3),
        "median_second": round(bench.percentile(per_second, 50) or 0, 3),
    }


def hub_stalls(folder: Path, since: float, until: float) -> dict:
    """The gevent hub stalls (bench/gunicorn_stalls.py) that began in a measured window:
    how many, how long, and the stacks sampled most often during them."""
    stalls = []
    for path in folder.glob("stalls-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if since <= record["at"] < until:
                stalls.append(record)
    stacks: dict[str, int] = {}
    for record in stalls:
        for stack, samples in record["stacks"]:
            stacks[stack] = stacks.get(stack, 0) + samples
    longest = sorted(stalls, key=lambda r: -r["ms"])[:5]
    return {
        "count": len(stalls),
        "total_ms": round(sum(r["ms"] for r in stalls)),
        "over_50ms": sum(1 for r in stalls if r["ms"] > 50),
        "longest": [
            {
                "second": round(r["at"] - since, 2),
                "pid": r["pid"],
                "ms": r["ms"],
                "main_thread_cpu_ms": r["main_thread_cpu_ms"],
            }
            for r in longest
        ],
        "top_stacks": [
            {"samples": n, "stack": stack}
            for stack, n in sorted(stacks.items(), key=lambda kv: -kv[1])[:6]
        ],
    }
