"""Several modules behind one command: priority order, sequential vs parallel execution.

Two modules may register the same command name (different ``module_name``); the router
runs sequential ones one after another in priority order and parallel ones
concurrently, and lists the executions in priority order (DESIGN §5, spec "Event
Processing Flow").
"""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.integration


class Timed:
    """A module stub endpoint that records when each call started and finished."""

    def __init__(self, stub, label: str, delay: float):
        self.label = label
        self.delay = delay
        self.calls: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        stub.route("POST", r"/run", self)
        self.url = stub.url

    def __call__(self, _request):
        started = time.monotonic()
        time.sleep(self.delay)
        finished = time.monotonic()
        with self._lock:
            self.calls.append((started, finished))
        return {"response_action": "chat", "chat_message": f"from {self.label}"}


def _register(router, uniq, stubs, command: str, specs: list[tuple[str, int, float, str]]):
    """Register one module per (label, priority, delay, mode); returns label → (name, Timed)."""
    made = {}
    for label, priority, delay, mode in specs:
        timed = Timed(stubs(), label, delay)
        name = uniq(f"{label}-")
        router.register_module(
            name,
            timed.url,
            [
                {
                    "command": command,
                    "location_url": "/run",
                    "priority": priority,
                    "execution_mode": mode,
                    "timeout": 5,
                }
            ],
        )
        made[label] = (name, timed)
    return made


def test_sequential_modules_run_in_priority_order(pg_router, stubs, channel, uniq):
    command = uniq("seq")
    # registered late-first so the database id order is the opposite of the priority order
    made = _register(
        pg_router,
        uniq,
        stubs,
        command,
        [("second", 20, 0.0, "sequential"), ("first", 10, 0.3, "sequential")],
    )

    answer = pg_router.chat(f"!{command}", channel)

    first_name, first = made["first"]
    second_name, second = made["second"]
    assert [e["module"] for e in answer["executions"]] == [first_name, second_name]
    assert all(e["status"] == "success" for e in answer["executions"]), answer
    [(first_start, first_end)] = first.calls
    [(second_start, _)] = second.calls
    assert first_end - first_start >= 0.3
    assert second_start >= first_end, "the second module started before the slow first ended"
    replies = pg_router.replies(f"console:{channel}:{channel}", 2)
    assert sorted(r["chat_message"] for r in replies) == ["from first", "from second"]


def test_parallel_modules_overlap(pg_router, stubs, channel, uniq):
    command = uniq("par")
    made = _register(
        pg_router,
        uniq,
        stubs,
        command,
        [("left", 10, 0.5, "parallel"), ("right", 20, 0.5, "parallel")],
    )

    # first sight of the channel and user happens before the clock starts
    assert pg_router.chat("warming up", channel)["status"] == "processed"

    started = time.monotonic()
    answer = pg_router.chat(f"!{command}", channel)
    elapsed = time.monotonic() - started

    assert elapsed < 0.9, f"two 0.5 s parallel modules took {elapsed:.2f}s"
    assert [e["module"] for e in answer["executions"]] == [made["left"][0], made["right"][0]]
    assert all(e["status"] == "success" for e in answer["executions"]), answer
    [(left_start, left_end)] = made["left"][1].calls
    [(right_start, right_end)] = made["right"][1].calls
    assert left_start < right_end and right_start < left_end, "calls did not overlap"
    pg_router.replies(f"console:{channel}:{channel}", 2)


def test_executions_listed_in_priority_order(pg_router, stubs, channel, uniq):
    command = uniq("prio")
    made = _register(
        pg_router,
        uniq,
        stubs,
        command,
        [
            ("p30", 30, 0.0, "sequential"),
            ("p10", 10, 0.0, "sequential"),
            ("p20", 20, 0.0, "sequential"),
        ],
    )

    answer = pg_router.chat(f"!{command} go", channel)

    expected = [made[label][0] for label in ("p10", "p20", "p30")]
    assert [e["module"] for e in answer["executions"]] == expected
    assert [e["status"] for e in answer["executions"]] == ["success"] * 3
    assert len({e["execution_id"] for e in answer["executions"]}) == 3
    starts = {label: made[label][1].calls[0][0] for label in ("p10", "p20", "p30")}
    assert starts["p10"] <= starts["p20"] <= starts["p30"]
    # the /api/router/commands listing knows both the shared name and each priority
    pg_router.sync()
    listed = pg_router.get("/api/router/commands", params={"prefix": "!", "per_page": 500})
    mine = {
        i["module_name"]: i["priority"] for i in listed.json()["items"] if i["command"] == command
    }
    assert mine == {made[label][0]: int(label[1:]) for label in ("p10", "p20", "p30")}
