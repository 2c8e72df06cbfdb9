"""Connecting a Twitch channel over real HTTP: OAuth, activation, claims, subscriptions.

The router and the twitch collector run in one ``waddlebot up`` process; id.twitch.tv
and Helix are a local stand-in that refuses the first token it issues, so the
collector must refresh it (``grant_type=refresh_token``) and retry.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from waddlebot.testkit import FleetProcess
from waddlebot.twitch.eventsub import CHANNEL_TYPES
from waddlebot.twitch.testing import EventSubSender, TwitchStub

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twitch"
SECRET = "s3cret-webhook-key"
BOT_ID = "999000999"


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
            "TWITCH_WEBHOOK_CALLBACK_URL": "https://bot.example/webhooks/twitch/eventsub",
            "HEARTBEAT_INTERVAL": "1",
            "TWITCH_CHECKIN_INTERVAL": "1",
        },
    ).start()
    yield process
    process.stop()


def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def login(fleet) -> dict:
    """Follow ``/auth/login`` as a browser would; the authorize URL's parameters."""
    answer = requests.get(fleet.url + "/webhooks/twitch/auth/login", allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def callback(fleet, **params) -> requests.Response:
    return requests.get(fleet.url + "/webhooks/twitch/auth/callback", params=params)


def test_login_redirects_to_twitch_with_a_state(fleet, twitch):
    answer = requests.get(fleet.url + "/webhooks/twitch/auth/login", allow_redirects=False)
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == twitch.auth_url + "/authorize"
    params = login(fleet)
    assert params["client_id"] == twitch.client_id
    assert params["response_type"] == "code"
    assert params["redirect_uri"] == fleet.url + "/webhooks/twitch/auth/callback"
    assert {"channel:bot", "user:bot", "moderator:manage:chat_messages"} <= set(
        params["scope"].split()
    )
    assert len(params["state"]) >= 20 and params["state"] != login(fleet)["state"]


def test_an_unknown_or_missing_state_is_400(fleet, twitch):
    code = twitch.add_user(str(uuid.uuid4().int % 10**9), "nobody")
    for params in ({"code": code, "state": "made-up"}, {"code": code}):
        answer = callback(fleet, **params)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == "state"


def test_a_declined_authorization_is_400(fleet):
    state = login(fleet)["state"]
    answer = callback(
        fleet, state=state, error="access_denied", error_description="The user denied you access"
    )
    assert answer.status_code == 400 and "denied" in answer.json()["error"]["message"]


def test_connecting_a_channel_refreshes_a_refused_token_and_activates_it(fleet, twitch):
    broadcaster = str(uuid.uuid4().int % 10**9)
    code = twitch.add_user(broadcaster, "streamer", display_name="Streamer")
    twitch.expire_exchanged_tokens = True
    state = login(fleet)["state"]
    grants_before = len(twitch.token_grants())
    answer = callback(fleet, code=code, state=state, scope="chat:read")
    twitch.expire_exchanged_tokens = False
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "connected" and body["user_id"] == broadcaster
    assert body["entity_id"] == f"twitch:{broadcaster}:{broadcaster}"

    grants = [g["grant_type"] for g in twitch.token_grants()[grants_before:]]
    assert grants[:2] == ["authorization_code", "refresh_token"]
    exchange = twitch.token_grants()[grants_before]
    assert exchange["redirect_uri"] == fleet.url + "/webhooks/twitch/auth/callback"
    users = [
        r
        for r in twitch.server.received("GET", "/helix/users")
        if r.headers["Authorization"].startswith(f"Bearer user-{broadcaster}-")
    ]
    assert (
        len(users) == 2 and users[0].headers["Authorization"] != users[1].headers["Authorization"]
    )

    assert callback(fleet, code=code, state=state).status_code == 400  # state is one-time
    entities = fleet.get("/api/router/entities", params={"platform": "twitch"}).json()["items"]
    assert body["entity_id"] in [e["entity_id"] for e in entities]
    (channel,) = [
        c for c in fleet.get("/api/twitch/channels").json()["items"] if c["user_id"] == broadcaster
    ]
    assert channel["status"] == "active" and channel["login"] == "streamer"
    assert not {"access_token", "refresh_token"} & set(channel)

    # the lifecycle claims the new channel and creates its EventSub subscriptions
    def created():
        mine = [
            s for s in twitch.subscriptions.values() if broadcaster in json.dumps(s["condition"])
        ]
        return mine if len(mine) == len(CHANNEL_TYPES) else None

    subscriptions = wait_until(created, timeout=15)
    assert {s["transport"]["callback"] for s in subscriptions} == {
        "https://bot.example/webhooks/twitch/eventsub"
    }
    posted = [
        r.json
        for r in twitch.server.received("POST", "/helix/eventsub/subscriptions")
        if broadcaster in json.dumps(r.json["condition"])
    ]
    assert {p["transport"]["secret"] for p in posted} == {SECRET}
    chat = next(s for s in subscriptions if s["type"] == "channel.chat.message")
    assert chat["condition"] == {"broadcaster_user_id": broadcaster, "user_id": BOT_ID}
    status = fleet.get("/api/twitch/status").json()["lifecycle"]
    assert body["entity_id"] in status["claims"] and status["coordination"] == "available"

    # Twitch then verifies the callback: the subscription becomes enabled
    challenge = json.loads((FIXTURES / "webhook_callback_verification.json").read_text())
    challenge["subscription"] = {**chat, "status": "webhook_callback_verification_pending"}
    sender = EventSubSender(fleet.url + "/webhooks/twitch/eventsub", SECRET)
    verified = sender.send(challenge, message_type="webhook_callback_verification")
    assert verified.text == challenge["challenge"]
    rows = fleet.get(
        "/api/twitch/subscriptions",
        params={"broadcaster_user_id": broadcaster, "subscription_type": "channel.chat.message"},
    ).json()["items"]
    assert [r["status"] for r in rows] == ["enabled"]

    # a moderation push deletes the message with the broadcaster's own token
    pushed = fleet.post(
        "/api/twitch/responses",
        json={
            "response_action": "chat",
            "entity_id": body["entity_id"],
            "platform": "twitch",
            "server_id": broadcaster,
            "channel_id": broadcaster,
            "user_id": "1234",
            "moderation": {"action": "delete", "message_id": "bad-message-1"},
        },
    )
    assert pushed.status_code == 202 and pushed.json()["moderation"] == "delete"
    (deleted,) = twitch.server.wait_for(1, method="DELETE", path="/helix/moderation/chat")
    assert parse_qs(deleted.query) == {
        "broadcaster_id": [broadcaster],
        "moderator_id": [broadcaster],
        "message_id": ["bad-message-1"],
    }
    assert deleted.headers["Authorization"].startswith(f"Bearer user-{broadcaster}-")


def test_a_browser_gets_a_page_not_json(fleet, twitch):
    code = twitch.add_user(str(uuid.uuid4().int % 10**9), "html_user", display_name="<b>Html</b>")
    state = login(fleet)["state"]
    answer = requests.get(
        fleet.url + "/webhooks/twitch/auth/callback",
        params={"code": code, "state": state},
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert "&lt;b&gt;Html&lt;/b&gt; is connected" in answer.text
