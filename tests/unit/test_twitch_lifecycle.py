"""Twitch collector services without HTTP: lifecycle, subscriptions, chat queue, replies, tokens.

The services are imported from ``twitch_module/services`` without running the app's
``__init__``; the router and Twitch are local stand-ins.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
import types
from pathlib import Path

import pytest

from waddlebot.db import Database
from waddlebot.http import HttpError
from waddlebot.settings import Secret
from waddlebot.store import MemoryStore
from waddlebot.testkit import StubServer, free_port
from waddlebot.twitch.eventsub import CHANNEL_TYPES
from waddlebot.twitch.helix import HelixClient
from waddlebot.twitch.oauth import AppTokenProvider, OAuthClient, TokenGrant
from waddlebot.twitch.testing import TwitchStub
from waddlebot.twitch.tokens import TokenCipher
from waddlebot.web import ValidationError

ROOT = Path(__file__).resolve().parents[2]


def _app(module: str):
    """Import ``twitch_module.<module>`` without executing the app package's __init__."""
    if "twitch_module" not in sys.modules:
        package = types.ModuleType("twitch_module")
        package.__path__ = [str(ROOT / "twitch_module")]
        sys.modules["twitch_module"] = package
    return importlib.import_module(f"twitch_module.{module}")


models = _app("models")
lifecycle_module = _app("services.lifecycle")
subscriptions_module = _app("services.subscriptions")
chat_module = _app("services.chat")
replies = _app("services.replies")
tokens_module = _app("services.tokens")
router_client = _app("services.router")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A database file with every table, created once (migrations take a while)."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "twitch.sqlite"
    Database(
        f"sqlite://{path}", definers=[models.define_tables], migrate=True, folder=str(folder)
    ).close()
    return path


@pytest.fixture
def database(migrated, tmp_path):
    """A fresh copy of the migrated database for one test."""
    shutil.copy(migrated, tmp_path / "twitch.sqlite")
    db = Database(
        f"sqlite://{tmp_path / 'twitch.sqlite'}",
        definers=[models.define_tables],
        folder=str(tmp_path),
    )
    yield db
    db.close()


@pytest.fixture(scope="module")
def twitch():
    stub = TwitchStub()
    yield stub
    stub.close()


def _helix(twitch: TwitchStub) -> HelixClient:
    oauth = OAuthClient(
        twitch.client_id, Secret(twitch.client_secret), auth_base_url=twitch.auth_url
    )
    return HelixClient(
        client_id=twitch.client_id,
        app_token=AppTokenProvider(oauth),
        api_base_url=twitch.helix_url,
        bot_user_id="999",
    )


# -- lifecycle ----------------------------------------------------------------------------


class _Subscriptions:
    def __init__(self, errors=()):
        self.ensured: list[str] = []
        self.errors = list(errors)

    def ensure(self, channel):
        self.ensured.append(channel)
        return {"created": 1, "errors": self.errors}


class _Streams:
    def __init__(self, live):
        self.live = live

    def get_streams(self, *, user_ids=()):
        return [
            {"user_id": uid, "type": "live", "viewer_count": viewers}
            for uid, viewers in self.live.items()
            if uid in user_ids
        ]


def _claim(channel: str) -> dict:
    return {
        "entity_id": f"twitch:{channel}:{channel}",
        "platform": "twitch",
        "server_id": channel,
        "channel_id": channel,
        "is_live": False,
        "viewer_count": 0,
        "priority": 100,
    }


@pytest.fixture
def router():
    stub = StubServer()
    stub.route("POST", r"/api/modules/register", (201, {"created": True}))
    stub.route("POST", r"/api/modules/heartbeat", {"status": "active"})
    stub.route("POST", r"/api/router/coordination/claim", {"claimed": [_claim("1337")]})
    stub.route("POST", r"/api/router/coordination/heartbeat", {"extended": 1})
    stub.route(
        "POST", r"/api/router/coordination/checkin", {"renewed": 1, "claims": [_claim("1337")]}
    )
    stub.route("POST", r"/api/router/coordination/status", {"ok": True})
    stub.route("POST", r"/api/router/coordination/error", {"error_count": 1})
    stub.route(
        "POST",
        r"/api/router/coordination/release-offline",
        {"released": ["twitch:1337:1337"], "claimed": [_claim("555")]},
    )
    stub.route("POST", r"/api/router/coordination/release", {"released": 1})
    yield stub
    stub.close()


def _lifecycle(url: str, **kwargs):
    options = dict(
        router=router_client.RouterClient(url, "test-key", timeout=2),
        registration=lifecycle_module.collector_registration(
            module_name="twitch", module_version="1.0.0", public_url="http://twitch.local:8000"
        ),
        container_id="twitch-test-1",
        max_claims=3,
        heartbeat_interval=10,
        checkin_interval=20,
    )
    options.update(kwargs)
    return lifecycle_module.CollectorLifecycle(**options)


def _bodies(stub, path):
    return [r.json for r in stub.received("POST", path)]


def test_a_full_cycle_register_claim_heartbeat_checkin_release(router):
    subscriptions = _Subscriptions()
    life = _lifecycle(router.url, subscriptions=subscriptions, helix=_Streams({"1337": 42}))
    assert life.run_once(now=0) == ["register", "claim"]
    (registration,) = _bodies(router, "/api/modules/register")
    assert registration["module_type"] == "collector" and registration["platform"] == "twitch"
    assert registration["endpoint_url"] == "http://twitch.local:8000"
    assert registration["health_check_url"] == "http://twitch.local:8000/api/twitch/health"
    assert _bodies(router, "/api/router/coordination/claim") == [
        {"platform": "twitch", "container_id": "twitch-test-1", "max_claims": 3}
    ]
    assert router.received()[0].headers["X-API-Key"] == "test-key"
    assert life.claims.keys() == {"twitch:1337:1337"} and subscriptions.ensured == ["1337"]
    assert life.run_once(now=5) == []
    assert life.run_once(now=10) == ["heartbeat"]
    assert _bodies(router, "/api/modules/heartbeat") == [
        {"module_name": "twitch", "status": "active"}
    ]
    assert _bodies(router, "/api/router/coordination/heartbeat") == [
        {"container_id": "twitch-test-1"}
    ]
    assert life.run_once(now=20) == ["heartbeat", "checkin"]
    assert _bodies(router, "/api/router/coordination/status") == [
        {"entity_id": "twitch:1337:1337", "is_live": True, "viewer_count": 42}
    ]
    assert _bodies(router, "/api/router/coordination/release-offline") == [
        {"container_id": "twitch-test-1", "platform": "twitch", "max_claims": 3}
    ]
    assert life.claims.keys() == {"twitch:555:555"} and subscriptions.ensured == ["1337", "555"]
    life.shutdown()
    assert _bodies(router, "/api/router/coordination/release") == [
        {"container_id": "twitch-test-1"}
    ]
    assert life.status()["claims"] == []
    life.shutdown()
    assert len(_bodies(router, "/api/router/coordination/release")) == 1


def test_registration_is_retried_while_the_router_is_down():
    life = _lifecycle(f"http://127.0.0.1:{free_port()}")
    assert life.run_once(now=0) == []
    assert not life.registered and "registration failed" in life.last_error
    life.shutdown()


def test_an_older_router_without_coordination_still_gets_heartbeats():
    router = StubServer()
    router.route("POST", r"/api/modules/register", {"created": False})
    router.route("POST", r"/api/modules/heartbeat", {"status": "active"})
    life = _lifecycle(router.url, subscriptions=_Subscriptions())
    assert life.run_once(now=0) == ["register", "claim"]
    assert life.status()["coordination"] == "unavailable" and life.claims == {}
    assert life.run_once(now=10) == ["heartbeat"]
    life.shutdown()
    assert router.received("POST", "/api/router/coordination/release") == []
    router.close()


def test_subscription_errors_are_reported_to_coordination(router):
    life = _lifecycle(router.url, subscriptions=_Subscriptions(errors=["channel.cheer: 403"]))
    life.run_once(now=0)
    (report,) = _bodies(router, "/api/router/coordination/error")
    assert report["entity_id"] == "twitch:1337:1337" and "channel.cheer" in report["error"]


def test_a_forgotten_module_registers_again(router):
    life = _lifecycle(router.url)
    life.run_once(now=0)
    router.route("POST", r"/api/modules/heartbeat", (404, {"error": {"code": "not_found"}}))
    life.run_once(now=10)
    assert not life.registered
    assert life.run_once(now=11)[0] == "register"


# -- EventSub subscriptions -----------------------------------------------------------------


def _manager(database, twitch):
    return subscriptions_module.SubscriptionManager(
        database=database,
        helix=_helix(twitch),
        callback="https://bot.example/webhooks/twitch/eventsub",
        secret=Secret("s3cret-webhook-key"),
        bot_user_id="999",
        container_id="c1",
    )


def _subscription_rows(database):
    with database.connection() as db:
        return db(db.twitch_subscriptions.id > 0).select().as_list()


def test_subscriptions_are_created_once_per_channel(database, twitch):
    twitch.subscriptions.clear()
    manager = _manager(database, twitch)
    assert manager.ensure("1337") == {"created": len(CHANNEL_TYPES), "errors": []}
    rows = _subscription_rows(database)
    assert {r["subscription_type"] for r in rows} == set(CHANNEL_TYPES)
    assert {r["status"] for r in rows} == {"webhook_callback_verification_pending"}
    sent = [r.json for r in twitch.server.received("POST", "/helix/eventsub/subscriptions")]
    assert {s["transport"]["callback"] for s in sent} == {
        "https://bot.example/webhooks/twitch/eventsub"
    }
    assert manager.ensure("1337")["created"] == 0
    # recreated after a failure revocation, not after the broadcaster revoked access
    with database.connection() as db:
        for kind, reason in (
            ("channel.cheer", "notification_failures_exceeded"),
            ("channel.ban", "authorization_revoked"),
        ):
            row = db(db.twitch_subscriptions.subscription_type == kind).select().first()
            twitch.subscriptions.pop(row.subscription_id)
            subscriptions_module.record_revocation(
                db, {"id": row.subscription_id, "type": kind, "status": reason}
            )
    assert manager.ensure("1337")["created"] == 1
    with database.connection() as db:
        assert subscriptions_module.reopen_revoked(db, "1337") == 1
    assert manager.ensure("1337")["created"] == 1


def test_existing_subscriptions_on_twitch_are_adopted(database, twitch):
    twitch.subscriptions.clear()
    assert _manager(database, twitch).ensure("2024")["created"] == len(CHANNEL_TYPES)
    with database.connection() as db:
        db(db.twitch_subscriptions.id > 0).delete()
    result = _manager(database, twitch).ensure("2024")
    assert result == {"created": 0, "errors": []}
    assert len(_subscription_rows(database)) == len(CHANNEL_TYPES)


# -- chat queue -----------------------------------------------------------------------------


class _FakeHelix:
    def __init__(self, failures=()):
        self.sent: list[tuple[str, str, float]] = []
        self.failures = list(failures)

    def send_chat_message(self, broadcaster_id, text, *, sender_id, reply_parent_message_id=None):
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((broadcaster_id, text, time.monotonic()))


def _drain(sender, count, timeout=3.0):
    deadline = time.monotonic() + timeout
    while len(sender.helix.sent) + sender.dropped < count and time.monotonic() < deadline:
        sender.run_once(block=0.02)


def test_each_channel_gets_its_own_sliding_window():
    helix = _FakeHelix()
    sender = chat_module.ChatSender(
        helix=helix, store=MemoryStore(), sender_id="999", limit=2, window=0.4
    )
    started = time.monotonic()
    for text in ("a", "b", "c"):
        sender.enqueue("1", text)
    sender.enqueue("2", "x")
    _drain(sender, 4)
    order = [(channel, text) for channel, text, _ in helix.sent]
    assert order.index(("2", "x")) < order.index(("1", "c"))
    third = next(at for channel, text, at in helix.sent if text == "c")
    assert third - started >= 0.35
    assert [t for c, t, _ in helix.sent if c == "1"] == ["a", "b", "c"]


def test_moderators_get_the_higher_limit_and_long_replies_are_split():
    store = MemoryStore()
    sender = chat_module.ChatSender(
        helix=_FakeHelix(), store=store, sender_id="999", limit=20, moderator_limit=100
    )
    assert sender.limit_for("1") == 20
    sender.mark_moderator("1", True)
    assert sender.limit_for("1") == 100
    sender.mark_moderator("1", False)
    assert sender.limit_for("1") == 20
    assert sender.enqueue("1", " ".join(["word"] * 300)) == 3
    assert sender.pending() == 3


def test_failed_sends_are_retried_then_dropped():
    helix = _FakeHelix(failures=[HttpError("down", url="x", status=503)])
    sender = chat_module.ChatSender(
        helix=helix, store=MemoryStore(), sender_id="999", retry_delay=0.01
    )
    sender.enqueue("1", "hello")
    _drain(sender, 1)
    assert [t for _, t, _ in helix.sent] == ["hello"]
    helix.failures = [HttpError("forbidden", url="x", status=403)]
    sender.enqueue("1", "nope")
    _drain(sender, 2)
    assert sender.dropped == 1 and len(helix.sent) == 1


# -- replies pushed by the router -------------------------------------------------------------


def test_pushed_replies_are_validated():
    reply = replies.parse_reply(
        {
            "response_action": "chat",
            "chat_message": "Commands: !help",
            "entity_id": "twitch:1337:1337",
            "platform": "twitch",
            "server_id": "1337",
            "channel_id": "1337",
            "user_id": "1234",
        }
    )
    assert (reply.broadcaster_id, reply.chat_message, reply.moderation_action) == (
        "1337",
        "Commands: !help",
        None,
    )
    moderation = replies.parse_reply(
        {
            "response_action": "chat",
            "chat_message": "@bob watch it",
            "entity_id": "twitch:1337:1337",
            "moderation": {"action": "delete", "message_id": "abc"},
        }
    )
    assert (moderation.broadcaster_id, moderation.message_id) == ("1337", "abc")
    for body, field in (
        ({"channel_id": "1337", "platform": "discord"}, "platform"),
        ({"chat_message": "hi"}, "channel_id"),
        ({"channel_id": "1337", "moderation": {"action": "ban"}}, "moderation.action"),
        ({"channel_id": "1337", "moderation": {"action": "delete"}}, "moderation.message_id"),
        ({"channel_id": "1337", "chat_message": 5}, "chat_message"),
    ):
        with pytest.raises(ValidationError) as raised:
            replies.parse_reply(body)
        assert raised.value.field == field


# -- tokens -------------------------------------------------------------------------------


def test_tokens_are_encrypted_at_rest_and_refreshed_in_place(database, twitch):
    oauth = OAuthClient(
        twitch.client_id, Secret(twitch.client_secret), auth_base_url=twitch.auth_url
    )
    store = tokens_module.TokenStore(database, oauth, TokenCipher("app-secret"))
    code = twitch.add_user("4242", "someone")
    grant = oauth.exchange_code(code, redirect_uri="https://bot.example/cb")
    store.save(user_id="4242", login="someone", display_name="Someone", grant=grant)
    with database.connection() as db:
        row = db(db.twitch_tokens.user_id == "4242").select().first()
    assert (
        grant.access_token not in row.access_token and grant.refresh_token not in row.refresh_token
    )
    provider = store.provider("4242")
    assert provider.access_token() == grant.access_token
    fresh = provider.refresh()
    assert store.provider("4242").access_token() == fresh != grant.access_token
    total, channels = store.channels()
    assert total == 1 and channels[0]["login"] == "someone" and "access_token" not in channels[0]
    broken = tokens_module.TokenStore(database, oauth, TokenCipher("app-secret"))
    bad = TokenGrant("x", "not-a-refresh-token", expires_at=0)
    broken.save(user_id="4243", login="gone", display_name="Gone", grant=bad)
    with pytest.raises(Exception):  # noqa: B017 - any OAuth failure; the row is what matters
        broken.provider("4243").access_token()
    assert broken.provider("4243") is None
    assert (
        tokens_module.TokenStore(database, oauth, TokenCipher("rotated")).provider("4242") is None
    )
