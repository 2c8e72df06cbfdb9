"""Nothing is lost while the router is down, and nothing arrives twice.

The router and the twitch collector run as separate processes (each its own embedded
SQLite database); the collector reaches the router through ``ROUTER_API_URL``. With
the router stopped, 50 signed notifications are acknowledged and stored; once the
router is back on the same port and data folder, every one of them arrives exactly
once: the follower's reputation is exactly 50 follows' worth.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from waddlebot.testkit import FleetProcess
from waddlebot.twitch.testing import EventSubSender

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twitch"
SECRET = "s3cret-webhook-key"
COUNT = 50


def follow(broadcaster: str, follower: str) -> dict:
    payload = json.loads((FIXTURES / "channel.follow.json").read_text())
    payload["event"].update(broadcaster_user_id=broadcaster, user_id=follower, user_name="Fan")
    return payload


def total(process: FleetProcess, **params) -> int:
    answer = process.get("/api/twitch/events", params={"per_page": 1, **params})
    return answer.json()["total"]


def wait_until(check, timeout: float):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    process = FleetProcess(["router_module"], data_dir=tmp_path_factory.mktemp("router"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def collector(router, tmp_path_factory):
    process = FleetProcess(
        ["twitch_module"],
        data_dir=tmp_path_factory.mktemp("twitch"),
        env={
            "ROUTER_API_URL": router.url,
            "TWITCH_WEBHOOK_SECRET": SECRET,
            "TWITCH_FORWARD_MAX_BACKOFF": "2",
        },
    ).start()
    yield process
    process.stop()


def test_notifications_survive_a_router_outage_exactly_once(router, collector):
    broadcaster, follower = "4711", "8080"
    sender = EventSubSender(collector.url + "/webhooks/twitch/eventsub", SECRET)
    assert sender.send(follow(broadcaster, follower)).status_code == 204
    wait_until(lambda: total(collector, forwarded="true") == 1, timeout=10)

    router.stop()
    for _ in range(COUNT):
        answer = sender.send(follow(broadcaster, follower), message_id=str(uuid.uuid4()))
        assert answer.status_code == 204
    assert total(collector, broadcaster_user_id=broadcaster) == COUNT + 1
    wait_until(
        lambda: (
            collector.get("/api/twitch/status").json()["forwarder"]["since_start"].get("retried", 0)
            > 0
        ),
        timeout=10,
    )
    assert total(collector, forwarded="false") == COUNT

    router.start()
    wait_until(lambda: total(collector, forwarded="true") == COUNT + 1, timeout=30)

    reputation = router.get(
        "/api/reputation",
        params={"entity_id": f"twitch:{broadcaster}:{broadcaster}", "user_id": follower},
    ).json()
    assert reputation["points"] == 10 * (COUNT + 1)
    activities = collector.get(
        "/api/twitch/activities", params={"user_id": follower, "per_page": 500}
    ).json()
    assert activities["total"] == COUNT + 1
    assert {(a["points"], a["context_sent"]) for a in activities["items"]} == {(10, True)}
    metrics = router.get("/api/router/metrics").json()["metrics"]
    assert not metrics.get("router_events_total{status=duplicate}")
    assert collector.get("/api/twitch/status").json()["forwarder"]["pending"] == 0


def test_without_twitch_settings_the_features_answer_503(collector, tmp_path_factory):
    bare = FleetProcess(["twitch_module"], data_dir=tmp_path_factory.mktemp("bare")).start()
    try:
        hook = requests.post(bare.url + "/webhooks/twitch/eventsub", data=b"{}")
        assert hook.status_code == 503
        assert hook.json()["error"]["message"] == "TWITCH_WEBHOOK_SECRET is not configured"
        assert total(bare) == 0
        login = requests.get(bare.url + "/webhooks/twitch/auth/login", allow_redirects=False)
        assert login.status_code == 503 and "TWITCH_APP_ID" in login.json()["error"]["message"]
        reply = bare.post(
            "/api/twitch/responses", json={"chat_message": "hi", "channel_id": "4711"}
        )
        assert reply.status_code == 503
        status = bare.get("/api/twitch/status").json()
        assert status["lifecycle"] == {"enabled": False} and status["configured"]["app"] is False
    finally:
        bare.stop()
    # the configured collector, without TWITCH_APP_ID either, still refuses chat clearly
    assert (
        collector.post(
            "/api/twitch/responses", json={"chat_message": "hi", "channel_id": "4711"}
        ).status_code
        == 503
    )
