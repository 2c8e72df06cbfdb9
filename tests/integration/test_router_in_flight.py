"""ROUTER_MAX_CONCURRENT: events processed at once per router process.

With one slot, an event arriving while another is still being processed (its module
is slow) waits for the slot; past the wait it gets a 503 naming the limit, with
Retry-After, and nothing of it is kept: the same event id goes through afterwards.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from waddlebot.testkit import FleetProcess, StubServer, chat_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory):
    collector = StubServer()
    collector.route("POST", r"/api/console/responses", {"ok": True})
    release = threading.Event()
    module = StubServer()

    def slow(_request):
        release.wait(30)
        return {"response_action": "chat", "chat_message": "done"}

    module.route("POST", r"/slow", slow)
    module.route("POST", r"/fast", {"response_action": "chat", "chat_message": "quick"})
    fleet = FleetProcess(
        ["router_module"],
        env={"ROUTER_MAX_CONCURRENT": "1"},
        data_dir=tmp_path_factory.mktemp("one-slot"),
    )
    fleet.start()
    try:
        fleet.register("console-one-slot", collector.url, collector_for="console")
        fleet.register(
            "one-slot-module",
            module.url,
            [
                {"command": "slowone", "location_url": "/slow", "timeout": 30},
                {"command": "fastone", "location_url": "/fast", "timeout": 5},
            ],
        )
        yield fleet, release
    finally:
        release.set()
        fleet.stop()
        module.close()
        collector.close()


def test_an_event_past_the_limit_waits_then_gets_a_503_and_can_be_retried(one_slot):
    fleet, release = one_slot
    first: dict = {}

    def hold_the_slot():
        first["answer"] = fleet.post(
            "/api/router/events", chat_event("!slowone", channel="slots"), timeout=60
        )

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        waited = None
        for _ in range(50):  # a fast one gets through until the slow one is in flight
            event_id = f"ev-{uuid.uuid4().hex}"
            waited = fleet.post(
                "/api/router/events",
                chat_event("!fastone", channel="slots", event_id=event_id),
                timeout=30,
            )
            if waited.status_code == 503:
                break
            assert waited.status_code == 200, waited.text
        assert waited.status_code == 503, waited.text
        error = waited.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "ROUTER_MAX_CONCURRENT" in error["message"]
        assert waited.headers["Retry-After"] == "5"
        # in a batch, each item without a slot says so; the batch itself is answered
        batch = fleet.post(
            "/api/router/events/batch",
            {"events": [chat_event("!fastone", channel="slots") for _ in range(2)]},
            timeout=30,
        )
        assert batch.status_code == 200, batch.text
        assert [r["error"]["code"] for r in batch.json()["results"]] == ["service_unavailable"] * 2
    finally:
        release.set()
        holder.join(60)
    assert first["answer"].status_code == 200, first["answer"].text
    # the refused event left no de-duplication mark: its retry goes through
    again = fleet.post(
        "/api/router/events",
        chat_event("!fastone", channel="slots", event_id=event_id),
        timeout=30,
    )
    assert again.status_code == 200, again.text
    assert again.json()["executions"][0]["status"] == "success"
