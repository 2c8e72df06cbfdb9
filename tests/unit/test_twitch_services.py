"""Twitch collector services without HTTP: translation, the webhook receiver, the forwarder.

The services are imported from ``twitch_module/services`` without running the app's
``__init__`` (which would build its fixtures from the environment), against a SQLite
database in a temporary folder and the in-process store.
"""

from __future__ import annotations

import copy
import datetime
import importlib
import json
import shutil
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from waddlebot.contracts import Event
from waddlebot.db import Database
from waddlebot.settings import Secret
from waddlebot.store import MemoryStore, StoreUnavailable
from waddlebot.testkit import StubServer
from waddlebot.twitch import eventsub
from waddlebot.web import ApiError, ServiceUnavailable, ValidationError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "twitch"
SECRET = "s3cret-webhook-key"


def _app(module: str):
    """Import ``twitch_module.<module>`` without executing the app package's __init__."""
    if "twitch_module" not in sys.modules:
        package = types.ModuleType("twitch_module")
        package.__path__ = [str(ROOT / "twitch_module")]
        sys.modules["twitch_module"] = package
    return importlib.import_module(f"twitch_module.{module}")


models = _app("models")
events = _app("services.events")
webhook = _app("services.webhook")
forwarder_module = _app("services.forwarder")
router_module = _app("services.router")


def fixture(name: str, **event) -> dict:
    """A documented Twitch payload from tests/fixtures/twitch, with event fields replaced."""
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    payload.get("event", {}).update(event)
    return payload


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


def _rows(database, **where):
    with database.connection() as db:
        query = db.twitch_events.id > 0
        for name, value in where.items():
            query &= db.twitch_events[name] == value
        return db(query).select(orderby=db.twitch_events.id).as_list()


# -- translation ----------------------------------------------------------------------------

EXPECTED = {
    "channel.follow": ("follow", "1234", "follow", 10),
    "channel.subscribe": ("subscription", "1234", "sub", 50),
    "channel.subscription.message": ("resub", "1234", "resub", 50),
    "channel.subscription.gift": ("subgift", "1234", "subgift", 120),
    "channel.cheer": ("cheer", "1234", "bits", 1000),
    "channel.raid": ("raid", "1234", "raid", 30),
    "channel.ban": ("ban", "1234", "ban", -10),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_activity_events_become_router_events(kind):
    message_type, user, activity_type, points = EXPECTED[kind]
    result = events.translate(kind, fixture(kind), message_id="msg-1")
    assert result.kind == "event"
    event = Event.parse(result.event)  # the router's own validation accepts it
    assert (event.platform, event.server_id, event.channel_id) == ("twitch", "1337", "1337")
    assert event.message_type == message_type and event.user_id == user
    assert event.event_id == "msg-1" and event.owner_user_id == "1337"
    assert event.metadata["message_id"] == "msg-1"
    assert (result.activity.activity_type, result.activity.points) == (activity_type, points)


def test_event_metadata_uses_the_design_keys():
    def meta(kind):
        return events.translate(kind, fixture(kind), message_id="m").event["metadata"]

    assert meta("channel.cheer")["amount"] == 1000
    assert meta("channel.raid")["viewers"] == 9001
    assert meta("channel.subscription.gift")["gifts"] == 2
    assert meta("channel.subscription.message")["months"] == 15
    assert meta("channel.subscribe")["tier"] == "1000"


def test_chat_message_carries_badges_and_the_chat_message_id():
    result = events.translate(
        "channel.chat.message", fixture("channel.chat.message"), message_id="eventsub-1"
    )
    event = Event.parse(result.event)
    assert event.message_type == "chatMessage" and event.message_content == "Hi chat"
    assert event.event_id == "cc106a89-1814-919d-454c-f4f2f970aae7"
    assert event.metadata["message_id"] == event.event_id
    assert event.user_roles == ("moderator", "subscriber")
    assert (event.user_id, event.user_name) == ("4145994", "viewer32")
    assert event.owner_user_id == "1971641" and result.activity is None
    badges = [{"set_id": "broadcaster"}, {"set_id": "vip"}, {"set_id": "founder"}]
    assert events.roles_from_badges(badges) == ["broadcaster", "vip", "subscriber"]


def test_the_bots_own_chat_is_not_forwarded_but_its_badges_are_kept():
    payload = fixture("channel.chat.message", chatter_user_id="999")
    result = events.translate("channel.chat.message", payload, message_id="x", bot_user_id="999")
    assert result.kind == "ignore" and result.bot_roles == ("moderator", "subscriber")


def test_anonymous_cheer_and_stream_status_and_unknown_types():
    cheer = fixture("channel.cheer", is_anonymous=True, user_id=None, user_name=None)
    result = events.translate("channel.cheer", cheer, message_id="m")
    assert result.event["user_id"] == "anonymous" and result.activity.points == 1000
    online = events.translate("stream.online", fixture("stream.online"), message_id="m")
    assert online.kind == "status"
    assert online.status == {"entity_id": "twitch:1337:1337", "is_live": True}
    offline = events.translate("stream.offline", fixture("stream.offline"), message_id="m")
    assert offline.status["is_live"] is False
    assert events.translate("channel.update", fixture("channel.update"), message_id="m").kind == (
        "ignore"
    )
    with pytest.raises(events.TranslationError):
        events.translate("channel.follow", {"subscription": {}}, message_id="m")
    with pytest.raises(events.TranslationError):
        events.translate(
            "channel.raid",
            fixture("channel.raid", viewers=3, **{"from_broadcaster_user_id": None}),
            message_id="m",
        )


# -- the webhook receiver -------------------------------------------------------------------


def _receiver(database, store=None, secret=SECRET, on_stored=None):
    return webhook.EventSubReceiver(
        database=database,
        store=store or MemoryStore(),
        secret=Secret(secret),
        on_stored=on_stored,
    )


def _signed(payload, *, message_type="notification", message_id=None, timestamp=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = eventsub.signed_headers(
        SECRET, body, message_type=message_type, message_id=message_id, timestamp=timestamp
    )
    return headers, body


def test_no_secret_is_a_503_naming_the_variable(database):
    receiver = _receiver(database, secret="")
    with pytest.raises(ServiceUnavailable) as raised:
        receiver.receive(*_signed(fixture("channel.follow")))
    assert raised.value.status == 503
    assert raised.value.message == "TWITCH_WEBHOOK_SECRET is not configured"


def test_bad_signature_and_stale_timestamp_are_403_and_store_nothing(database):
    receiver = _receiver(database)
    headers, body = _signed(fixture("channel.follow"))
    forged = dict(headers, **{eventsub.MESSAGE_SIGNATURE: "sha256=" + "0" * 64})
    with pytest.raises(ApiError) as bad:
        receiver.receive(forged, body)
    assert (bad.value.status, bad.value.code) == (403, "invalid_signature")
    with pytest.raises(ApiError):
        receiver.receive(headers, body + b" ")
    old = eventsub.format_timestamp(
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=11)
    )
    with pytest.raises(ApiError) as stale:
        receiver.receive(*_signed(fixture("channel.follow"), timestamp=old))
    assert (stale.value.status, stale.value.code) == (403, "stale_message")
    assert _rows(database) == []


def test_notification_is_stored_once_and_announced(database):
    stored = []
    receiver = _receiver(database, on_stored=stored.append)
    headers, body = _signed(fixture("channel.follow"), message_id="dup-1")
    assert receiver.receive(headers, body).status == 204
    assert receiver.receive(headers, body).outcome == "duplicate"
    # a second replica (its own store) still cannot store it twice: unique index
    assert _receiver(database).receive(headers, body).outcome == "duplicate"
    rows = _rows(database)
    assert len(rows) == 1 and [[n.message_id for n in batch] for batch in stored] == [["dup-1"]]
    assert stored[0][0].id == rows[0]["id"] and stored[0][0].payload["event"]["user_id"] == "1234"
    row = rows[0]
    assert (row["message_id"], row["subscription_type"], row["broadcaster_user_id"]) == (
        "dup-1",
        "channel.follow",
        "1337",
    )
    assert row["status"] == "pending" and row["forwarded"] is False
    assert row["payload"]["event"]["user_id"] == "1234" and row["next_attempt_at"] is not None


def test_unsupported_type_is_kept_but_not_forwarded(database):
    receipt = _receiver(database).receive(*_signed(fixture("channel.update")))
    assert (receipt.status, receipt.outcome) == (204, "ignored")
    (row,) = _rows(database)
    assert row["status"] == "ignored" and row["next_attempt_at"] is None


def test_challenge_and_revocation_update_the_subscription(database):
    receiver = _receiver(database)
    challenge = fixture("webhook_callback_verification")
    receipt = receiver.receive(*_signed(challenge, message_type="webhook_callback_verification"))
    assert (receipt.status, receipt.text) == (200, "pogchamp-kappa-360noscope-vohiyo")
    receipt = receiver.receive(*_signed(fixture("revocation"), message_type="revocation"))
    assert receipt.status == 204
    with database.connection() as db:
        (row,) = db(db.twitch_subscriptions.id > 0).select().as_list()
    assert row["status"] == "revoked" and row["revoked_reason"] == "authorization_revoked"
    assert row["subscription_id"] == "f1c2a387-161a-49f9-a165-0f21d7a4e1c4"
    assert _rows(database) == []


def test_malformed_bodies_and_unknown_message_types_are_400(database):
    receiver = _receiver(database)
    for body in (b"{not json", b"[1, 2]", json.dumps({"subscription": {}}).encode()):
        with pytest.raises(ValidationError):
            receiver.receive(*_signed(body))
    headers, body = _signed(fixture("channel.follow"), message_type="surprise")
    with pytest.raises(ValidationError) as unknown:
        receiver.receive(headers, body)
    assert unknown.value.field == eventsub.MESSAGE_TYPE


def test_a_failed_insert_is_a_503_and_twitchs_retry_gets_in(database):
    class _Down:
        def connection(self):
            raise RuntimeError("database unavailable")

    headers, body = _signed(fixture("channel.follow"), message_id="retry-me")
    with pytest.raises(ServiceUnavailable) as failed:
        _receiver(_Down()).receive(headers, body)
    assert failed.value.status == 503
    assert _receiver(database).receive(headers, body).outcome == "stored"
    assert _receiver(database).receive(headers, body).outcome == "duplicate"


class _StoreDown(MemoryStore):
    """A store whose every call fails, as Redis does when it is unreachable."""

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        raise StoreUnavailable(f"store down ({name})")


def test_notifications_are_stored_and_deduplicated_while_the_store_is_down(database):
    receiver = _receiver(database, store=_StoreDown())
    headers, body = _signed(fixture("channel.follow"), message_id="no-store-1")
    assert receiver.receive(headers, body).outcome == "stored"
    assert receiver.receive(headers, body).outcome == "duplicate"
    assert [row["message_id"] for row in _rows(database)] == ["no-store-1"]


def test_concurrent_notifications_share_commits(database):
    stored = []
    receiver = _receiver(database, on_stored=stored.append)
    requests = [_signed(fixture("channel.follow"), message_id=f"c-{n}") for n in range(40)]
    requests.append(requests[0])
    outcomes = []
    threads = [
        threading.Thread(target=lambda r=r: outcomes.append(receiver.receive(*r).outcome))
        for r in requests
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("stored") == 40 and outcomes.count("duplicate") == 1
    assert len(_rows(database)) == 40
    assert receiver.writer.commits < 40 and sum(len(batch) for batch in stored) == 40


# -- the forwarder ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _router_stub():
    stub = StubServer()
    yield stub
    stub.close()


@pytest.fixture
def router(_router_stub):
    """A stand-in router that accepts every event, with nothing recorded yet."""
    _router_stub.clear()
    _router_stub.route("POST", r"/api/router/events", {"status": "processed", "reputation": None})
    _router_stub.route(
        "POST",
        r"/api/router/events/batch",
        lambda r: {"results": [{"status": "processed"} for _ in r.json["events"]]},
    )
    return _router_stub


def sent_event_ids(router) -> list[str]:
    """Event ids the router received, single or in batches."""
    ids = [r.json["event_id"] for r in router.received("POST", "/api/router/events")]
    for batch in router.received("POST", "/api/router/events/batch"):
        ids += [e["event_id"] for e in batch.json["events"]]
    return ids


def _forwarder(database, router, **kwargs):
    client = router_module.RouterClient(router.url, "test-key", timeout=2)
    options = dict(database=database, router=client, bot_user_id="999", workers=2)
    options.update(base_backoff=0.05, max_backoff=0.2)
    options.update(kwargs)
    return forwarder_module.EventForwarder(**options)


def _make_due(database):
    """Fast-forward: every waiting row is due now."""
    earlier = datetime.datetime(2000, 1, 1)
    with database.connection() as db:
        db(db.twitch_events.next_attempt_at != None).update(next_attempt_at=earlier)  # noqa: E711


def _store(database, *payloads):
    receiver = _receiver(database)
    ids = []
    for number, payload in enumerate(payloads):
        message_id = f"m-{number}-{time.monotonic_ns()}"
        receiver.receive(*_signed(payload, message_id=message_id))
        ids.append(message_id)
    return ids


def test_forwarded_events_are_recorded_with_their_activity(database, router):
    router.route(
        "POST",
        r"/api/router/events",
        {"status": "processed", "reputation": {"points": 30, "total": 30}},
    )
    (message_id,) = _store(database, fixture("channel.raid"))
    assert _forwarder(database, router).run_once() == 1
    sent = router.received("POST", "/api/router/events")[0]
    assert sent.headers["X-API-Key"] == "test-key"
    assert sent.json["event_id"] == message_id and sent.json["user_id"] == "1234"
    (row,) = _rows(database)
    assert row["forwarded"] is True and row["status"] == "forwarded"
    assert row["forward_attempts"] == 1 and row["processed_at"] is not None
    with database.connection() as db:
        (activity,) = db(db.twitch_activities.id > 0).select().as_list()
    assert activity["activity_type"] == "raid" and activity["points"] == 30
    assert activity["context_sent"] is True and activity["event_id"] == message_id


def test_router_outage_retries_with_backoff_until_accepted(database, router):
    router.route("POST", r"/api/router/events", (503, {"error": {"message": "down"}}))
    _store(database, fixture("channel.follow"))
    forwarder = _forwarder(database, router)
    assert forwarder.run_once() == 1
    (row,) = _rows(database)
    assert row["forwarded"] is False and row["forward_attempts"] == 1
    assert "503" in row["last_error"] and row["status"] == "pending"
    assert forwarder.run_once() == 0  # not due yet
    router.route("POST", r"/api/router/events", {"status": "duplicate"})
    _make_due(database)
    assert forwarder.run_once() == 1
    (row,) = _rows(database)
    assert row["forwarded"] is True and row["forward_attempts"] == 2
    with database.connection() as db:
        (activity,) = db(db.twitch_activities.id > 0).select().as_list()
    assert activity["points"] == 10  # duplicate: an earlier attempt was processed


def test_backoff_grows_exponentially_up_to_the_cap(database, router):
    forwarder = _forwarder(database, router, max_backoff=10.0)
    forwarder.base_backoff = 0.5
    delays = [forwarder.backoff(n) for n in range(1, 8)]
    assert delays[0] == pytest.approx(0.5, rel=0.11) and delays[3] == pytest.approx(4, rel=0.11)
    assert all(d <= 11.0 for d in delays) and delays[-1] >= 10.0


def test_a_refused_event_is_rejected_not_retried(database, router):
    router.route(
        "POST",
        r"/api/router/events",
        (400, {"error": {"code": "validation_error", "message": "bad", "field": "user_id"}}),
    )
    _store(database, fixture("channel.follow"))
    forwarder = _forwarder(database, router)
    forwarder.run_once()
    (row,) = _rows(database)
    assert row["status"] == "rejected" and row["next_attempt_at"] is None
    assert "bad" in row["last_error"]
    assert forwarder.run_once() == 0


def test_a_batch_goes_in_one_call_and_is_retried_as_a_whole(database, router):
    router.route("POST", r"/api/router/events/batch", (502, {"error": "bad gateway"}))
    ids = _store(database, *[fixture("channel.follow", user_id=str(n)) for n in range(3)])
    forwarder = _forwarder(database, router)
    assert forwarder.run_once() == 3
    (batch,) = router.received("POST", "/api/router/events/batch")
    assert [e["event_id"] for e in batch.json["events"]] == ids
    assert all(not r["forwarded"] and r["forward_attempts"] == 1 for r in _rows(database))
    router.route(
        "POST",
        r"/api/router/events/batch",
        lambda r: {
            "results": [
                {"status": "processed", "reputation": {"points": 10, "total": 10}},
                {"error": {"code": "validation_error", "message": "no", "field": "user_id"}},
                {"status": "duplicate"},
            ]
        },
    )
    _make_due(database)
    assert forwarder.run_once() == 3
    assert [r["status"] for r in _rows(database)] == ["forwarded", "rejected", "forwarded"]
    assert "no" in _rows(database)[1]["last_error"]


def test_a_refused_batch_falls_back_to_single_events(database, router):
    router.route("POST", r"/api/router/events/batch", (413, {"error": {"message": "too big"}}))
    ids = _store(database, fixture("channel.follow"), fixture("channel.cheer"))
    _forwarder(database, router).run_once()
    singles = [r.json["event_id"] for r in router.received("POST", "/api/router/events")]
    assert singles == ids and all(r["forwarded"] for r in _rows(database))


def test_stream_status_goes_to_coordination_and_bot_chat_is_dropped(database, router):
    router.route("POST", r"/api/router/coordination/status", {"entity_id": "twitch:1337:1337"})
    seen = []
    _store(
        database,
        fixture("stream.online"),
        fixture("channel.chat.message", chatter_user_id="999"),
    )
    _forwarder(database, router, on_bot_roles=lambda b, roles: seen.append((b, roles))).run_once()
    status = router.received("POST", "/api/router/coordination/status")[0].json
    assert status == {"entity_id": "twitch:1337:1337", "is_live": True}
    assert sent_event_ids(router) == []
    assert [r["status"] for r in _rows(database)] == ["forwarded", "ignored"]
    assert seen == [("1971641", ("moderator", "subscriber"))]


def test_two_forwarders_never_send_the_same_row(database, router):
    ids = _store(
        database, *[fixture("channel.follow", broadcaster_user_id=str(n)) for n in range(30)]
    )
    first, second = _forwarder(database, router), _forwarder(database, router)
    threads = [threading.Thread(target=f.run_once) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent_event_ids(router)) == sorted(ids)
    assert all(r["forwarded"] for r in _rows(database))


def test_fresh_rows_go_from_memory_and_the_table_catches_the_rest(database, router):
    forwarder = _forwarder(database, router)
    receiver = _receiver(database, on_stored=forwarder.submit)
    first, second = "hot-1", "hot-2"
    receiver.receive(*_signed(fixture("channel.follow"), message_id=first))
    receiver.receive(*_signed(fixture("channel.cheer"), message_id=second))
    assert forwarder._lease(datetime.datetime.now()) == []  # born leased: no scan finds them
    forwarder._hot.popleft()  # lost from memory (as if the process died) before sending
    assert forwarder.run_once() == 1 and sent_event_ids(router) == [second]
    assert [r["status"] for r in _rows(database)] == ["pending", "forwarded"]
    _make_due(database)  # the lease of the lost one runs out
    assert forwarder.run_once() == 1 and sent_event_ids(router) == [second, first]
    assert all(r["forwarded"] and r["lease_token"] is None for r in _rows(database))


def test_the_thread_wakes_on_a_stored_notification(database, router):
    forwarder = _forwarder(database, router, poll_interval=5.0)
    forwarder.start()
    try:
        receiver = _receiver(database, on_stored=forwarder.submit)
        time.sleep(0.2)
        started = time.monotonic()
        receiver.receive(*_signed(copy.deepcopy(fixture("channel.follow"))))
        router.wait_for(1, method="POST", path="/api/router/events", timeout=3)
        assert time.monotonic() - started < 2.0
    finally:
        forwarder.stop()
