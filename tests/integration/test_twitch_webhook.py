"""The EventSub webhook over real HTTP, and events end to end through the router.

``waddlebot up`` runs the router and the twitch collector in one process (embedded
SQLite, in-process store) with ``TWITCH_*`` pointing at a local Twitch stand-in. Payloads
are Twitch's documented examples (tests/fixtures/twitch), signed the way Twitch signs.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from waddlebot.testkit import FleetProcess
from waddlebot.twitch import eventsub
from waddlebot.twitch.testing import EventSubSender, TwitchStub

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twitch"
SECRET = "s3cret-webhook-key"
BOT_ID = "999000999"
WEBHOOK = "/webhooks/twitch/eventsub"


def fixture(name: str, **event) -> dict:
    """A documented Twitch payload with event fields replaced."""
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    payload.get("event", {}).update(event)
    return payload


def new_id() -> str:
    """A numeric Twitch-style id nobody else in this module uses."""
    return str(uuid.uuid4().int % 10**9)


@pytest.fixture(scope="module")
def twitch():
    stub = TwitchStub()
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def fleet(twitch, tmp_path_factory):
    process = FleetProcess(
        ["router_module", "twitch_module"],
        data_dir=tmp_path_factory.mktemp("fleet"),
        env={
            "TWITCH_WEBHOOK_SECRET": SECRET,
            "TWITCH_APP_ID": twitch.client_id,
            "TWITCH_APP_SECRET": twitch.client_secret,
            "TWITCH_API_BASE_URL": twitch.helix_url,
            "TWITCH_AUTH_BASE_URL": twitch.auth_url,
            "TWITCH_BOT_USER_ID": BOT_ID,
            "TWITCH_BOT_USERNAME": "waddlebot",
        },
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sender(fleet):
    return EventSubSender(fleet.url + WEBHOOK, SECRET)


def stored_count(fleet) -> int:
    return fleet.get("/api/twitch/events", params={"per_page": 1}).json()["total"]


def event_row(fleet, message_id: str) -> dict | None:
    for row in fleet.get("/api/twitch/events", params={"per_page": 500}).json()["items"]:
        if row["message_id"] == message_id:
            return row
    return None


def wait_until(check, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_forwarded(fleet, message_id: str) -> dict:
    return wait_until(lambda: (r := event_row(fleet, message_id)) and r["forwarded"] and r)


# -- the webhook's answers ---------------------------------------------------------------------


def test_challenge_answers_the_raw_challenge_as_plain_text(fleet, sender):
    answer = sender.send(
        fixture("webhook_callback_verification"), message_type="webhook_callback_verification"
    )
    assert answer.status_code == 200
    assert answer.text == "pogchamp-kappa-360noscope-vohiyo"
    assert answer.headers["Content-Type"].startswith("text/plain")
    subscriptions = fleet.get("/api/twitch/subscriptions", params={"status": "enabled"}).json()
    assert "f1c2a387-161a-49f9-a165-0f21d7a4e1c4" in [
        s["subscription_id"] for s in subscriptions["items"]
    ]


def test_notification_is_stored_acknowledged_and_forwarded(fleet, sender):
    broadcaster = new_id()
    message_id = str(uuid.uuid4())
    answer = sender.send(
        fixture("channel.follow", broadcaster_user_id=broadcaster), message_id=message_id
    )
    assert answer.status_code == 204 and answer.text == ""
    row = wait_forwarded(fleet, message_id)
    assert row["subscription_type"] == "channel.follow" and row["status"] == "forwarded"
    activities = fleet.get(
        "/api/twitch/activities", params={"broadcaster_user_id": broadcaster}
    ).json()["items"]
    assert [(a["activity_type"], a["points"], a["context_sent"]) for a in activities] == [
        ("follow", 10, True)
    ]


def test_revocation_marks_the_subscription_revoked(fleet, sender):
    payload = fixture("revocation")
    payload["subscription"]["id"] = str(uuid.uuid4())
    answer = sender.send(payload, message_type="revocation")
    assert answer.status_code == 204
    revoked = fleet.get("/api/twitch/subscriptions", params={"status": "revoked"}).json()
    (row,) = [s for s in revoked["items"] if s["subscription_id"] == payload["subscription"]["id"]]
    assert row["revoked_reason"] == "authorization_revoked" and row["revoked_at"]


def test_a_duplicate_message_id_is_acknowledged_and_ignored(fleet, sender):
    message_id = str(uuid.uuid4())
    payload = fixture("channel.cheer", broadcaster_user_id=new_id())
    before = stored_count(fleet)
    assert sender.send(payload, message_id=message_id).status_code == 204
    assert sender.send(payload, message_id=message_id).status_code == 204
    assert stored_count(fleet) == before + 1


def test_a_stale_timestamp_is_refused(fleet, sender):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=11)
    before = stored_count(fleet)
    answer = sender.send(fixture("channel.follow"), timestamp=eventsub.format_timestamp(old))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "stale_message"
    assert stored_count(fleet) == before


def test_a_bad_signature_is_403_and_stores_nothing(fleet, sender):
    before = stored_count(fleet)
    answer = sender.send(fixture("channel.follow"), secret="not-the-webhook-secret")
    assert answer.status_code == 403
    assert answer.json()["error"]["field"] == eventsub.MESSAGE_SIGNATURE
    body = json.dumps(fixture("channel.follow")).encode()
    unsigned = {"Content-Type": "application/json", eventsub.MESSAGE_TYPE: "notification"}
    assert requests.post(fleet.url + WEBHOOK, data=body, headers=unsigned).status_code == 403
    assert stored_count(fleet) == before


def test_an_unknown_subscription_type_is_acknowledged_not_forwarded(fleet, sender):
    message_id = str(uuid.uuid4())
    answer = sender.send(fixture("channel.update"), message_id=message_id)
    assert answer.status_code == 204
    row = event_row(fleet, message_id)
    assert row["status"] == "ignored" and row["forwarded"] is False
    assert "unsupported" in row["last_error"]


def test_malformed_json_is_a_400(fleet, sender):
    before = stored_count(fleet)
    answer = sender.send(b'{"subscription": {"type": "channel.follow"}, "event": ')
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "validation_error",
        "message": answer.json()["error"]["message"],
        "field": "body",
    }
    assert sender.send(b"[]").status_code == 400
    assert stored_count(fleet) == before


def test_an_unknown_message_type_is_a_400(fleet, sender):
    answer = sender.send(fixture("channel.follow"), message_type="something_new")
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == eventsub.MESSAGE_TYPE


# -- end to end through the router ------------------------------------------------------------


def test_help_in_twitch_chat_is_answered_in_twitch_chat(fleet, sender, twitch):
    wait_until(lambda: fleet.get("/api/twitch/status").json()["lifecycle"]["registered"])
    broadcaster, chat_id = new_id(), str(uuid.uuid4())
    payload = fixture(
        "channel.chat.message",
        broadcaster_user_id=broadcaster,
        message_id=chat_id,
        message={"text": "!help", "fragments": [{"type": "text", "text": "!help"}]},
    )
    assert sender.send(payload).status_code == 204

    def reply():
        return [m for m in twitch.chat_messages() if m["broadcaster_id"] == broadcaster]

    (message,) = wait_until(reply)
    assert message["sender_id"] == BOT_ID
    assert "!help" in message["message"]
    post = twitch.server.received("POST", "/helix/chat/messages")[-1]
    assert post.headers["Client-Id"] == twitch.client_id
    assert post.headers["Authorization"].startswith("Bearer app-token-")


def test_a_raid_gives_the_raider_30_points(fleet, sender):
    broadcaster, raider = new_id(), new_id()
    message_id = str(uuid.uuid4())
    payload = fixture(
        "channel.raid",
        to_broadcaster_user_id=broadcaster,
        from_broadcaster_user_id=raider,
        from_broadcaster_user_name="Raider",
    )
    assert sender.send(payload, message_id=message_id).status_code == 204
    wait_forwarded(fleet, message_id)
    answer = fleet.get(
        "/api/reputation",
        params={"entity_id": f"twitch:{broadcaster}:{broadcaster}", "user_id": raider},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["points"] == 30
    activity = fleet.get("/api/twitch/activities", params={"user_id": raider}).json()["items"]
    assert [(a["activity_type"], a["points"]) for a in activity] == [("raid", 30)]


def test_every_event_type_reaches_the_router(fleet, sender):
    broadcaster, fan = new_id(), new_id()
    fleet.post(
        "/api/gateway/activate",
        json={
            "platform": "twitch",
            "server_id": broadcaster,
            "channel_id": broadcaster,
            "owner_user_id": broadcaster,
            "config": {},
        },
    ).raise_for_status()
    sent = {}
    for kind in (
        "channel.follow",
        "channel.subscribe",
        "channel.subscription.message",
        "channel.subscription.gift",
        "channel.cheer",
        "channel.ban",
        "stream.online",
    ):
        message_id = str(uuid.uuid4())
        answer = sender.send(
            fixture(kind, broadcaster_user_id=broadcaster, user_id=fan), message_id=message_id
        )
        assert answer.status_code == 204, (kind, answer.text)
        sent[kind] = message_id
    for message_id in sent.values():
        wait_forwarded(fleet, message_id)
    points = {
        a["activity_type"]: a["points"]
        for a in fleet.get(
            "/api/twitch/activities", params={"broadcaster_user_id": broadcaster}
        ).json()["items"]
    }
    assert points == {
        "follow": 10,
        "sub": 50,
        "resub": 50,
        "subgift": 120,
        "bits": 1000,
        "ban": -10,
    }
    total = fleet.get(
        "/api/reputation",
        params={"entity_id": f"twitch:{broadcaster}:{broadcaster}", "user_id": fan},
    ).json()["points"]
    assert total == sum(points.values())
    entities = fleet.get("/api/router/coordination/entities", params={"per_page": 500}).json()[
        "items"
    ]
    (entity,) = [e for e in entities if e["entity_id"] == f"twitch:{broadcaster}:{broadcaster}"]
    assert entity["is_live"] is True


def test_responses_need_the_service_key_and_a_valid_body(fleet):
    body = {"response_action": "chat", "chat_message": "hi", "channel_id": "1337"}
    assert requests.post(fleet.url + "/api/twitch/responses", json=body).status_code == 401
    bad = fleet.post("/api/twitch/responses", json={"chat_message": "hi"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "channel_id"
    accepted = fleet.post("/api/twitch/responses", json=body)
    assert accepted.status_code == 202 and accepted.json()["queued_messages"] == 1
