"""Module responses (DESIGN §5): ``POST /api/router/responses``, delivery and the overlay.

A module called by the router may answer later, posting to ``/api/router/responses``
with the session id it was called with. The router checks the session is alive and
belongs to the entity (and the execution's entity), records the response in
``module_responses`` and delivers it: ``chat`` is pushed to the platform's collector
(retried while the collector is briefly down), ``media``/``ticker``/``form`` are
published on the store channel ``overlay:<entity_id>`` and kept for replay in
``overlay:recent:<entity_id>``.

Fleets: ``pg_router`` (conftest: PostgreSQL primary + replica, Redis), ``embedded_router``
(SQLite + in-process store) and ``short_router`` below: a router of its own on
PostgreSQL + Redis with ``SESSION_TTL=2`` (sessions expire while the test waits) and a
collector stub that can be told to fail, so nothing shared is disturbed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import Router, unique

from waddlebot.store import make_store
from waddlebot.testkit import (
    TEST_REDIS_HOST,
    FleetProcess,
    StubServer,
    clear_store_prefix,
    create_database,
    drop_database,
    run_sql,
)

pytestmark = pytest.mark.integration

RESPONSES = "/api/router/responses"
SESSION_TTL = 2

MEDIA = {
    "response_action": "media",
    "media_type": "clip",
    "media_url": "https://clips.example.org/bob.mp4",
}
TICKER = {"response_action": "ticker", "ticker_text": "Welcome raiders!", "ticker_duration": 15}
FORM = {
    "response_action": "form",
    "form_title": "Next game?",
    "form_fields": [
        {"name": "game", "type": "radio", "options": ["chess", "go"], "required": True},
        {"name": "why", "type": "textarea"},
    ],
    "form_submit_url": "https://forms.example.org/vote",
}


def entity(channel: str) -> str:
    return f"console:{channel}:{channel}"


def assert_error(answer, status: int, field: str) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    return error


def wait_until(predicate, timeout: float = 6.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        time.sleep(interval)


@dataclasses.dataclass
class Session:
    """A real session: the answer to a command event and its one execution."""

    router: Router
    channel: str
    module: str
    session_id: str
    execution_id: str

    @property
    def entity_id(self) -> str:
        return entity(self.channel)

    def respond(self, body: dict, **override):
        payload = {
            "session_id": self.session_id,
            "execution_id": self.execution_id,
            "entity_id": self.entity_id,
            "module_name": self.module,
            **body,
            **override,
        }
        return self.router.post(RESPONSES, {k: v for k, v in payload.items() if v is not None})


def module_answering(router: Router, stub: StubServer, answer) -> tuple[str, str]:
    """Register a module whose one command answers ``answer``; returns (module, command)."""
    name, command = unique("later-"), unique("later")
    stub.route("POST", f"/{command}", answer)
    router.register_module(name, stub.url, [{"command": command, "location_url": f"/{command}"}])
    return name, command


def open_session(router: Router, stub: StubServer, channel: str | None = None) -> Session:
    """Run a command whose module answers nothing inline (it will answer later)."""
    name, command = module_answering(router, stub, {})
    channel = channel or unique("resp")
    answer = router.chat(f"!{command}", channel)
    [execution] = answer["executions"]
    assert execution["status"] == "success", answer
    return Session(router, channel, name, answer["session_id"], execution["execution_id"])


# -- a router of our own: short sessions, a collector that can fail ---------------------------
class FlakyCollector:
    """Collector stub: answers 503 to the first ``fail[entity_id]`` pushes for an entity."""

    def __init__(self):
        self.stub = StubServer()
        self.fail: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stub.route("POST", r"/api/(?P<platform>[a-z]+)/responses", self)
        self.stub.route("GET", r"/api/[a-z]+/health", {"status": "ok"})

    def __call__(self, request):
        entity_id = (request.json or {}).get("entity_id")
        with self._lock:
            seen = self._seen[entity_id] = self._seen.get(entity_id, 0) + 1
        if seen <= self.fail.get(entity_id, 0):
            return 503, {"error": "collector restarting"}
        if entity_id in self.status:
            return self.status[entity_id], {"error": "refused"}
        return {"ok": True}


@pytest.fixture(scope="module")
def short_router(request, tmp_path_factory) -> Iterator[tuple[Router, FlakyCollector, str]]:
    """A router with SESSION_TTL=2 on a database of its own; (router, collector, db url)."""
    name = f"waddlebot_resp_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    prefix = f"wbtest:{uuid.uuid4().hex[:12]}:"
    fleet = FleetProcess(
        ["router_module"],
        env={
            "DATABASE_URL": url,
            "REDIS_HOST": TEST_REDIS_HOST,
            "WADDLEBOT_STORE_PREFIX": prefix,
            "SESSION_TTL": str(SESSION_TTL),
            "ROUTER_COMMAND_CACHE_TTL": "0.5",
            "ROUTER_DEFAULT_RATE_LIMIT": "1000",
        },
        data_dir=tmp_path_factory.mktemp("router-short-session"),
    )
    collector = FlakyCollector()
    fleet.start()
    try:
        answer = fleet.post(
            "/api/modules/register",
            {
                "module_name": "console-collector-short",
                "module_version": "1.0.0",
                "module_type": "collector",
                "platform": "console",
                "endpoint_url": collector.stub.url,
                "core": False,
                "commands": [],
            },
        )
        assert answer.status_code in (200, 201), answer.text
        yield Router("short-session", fleet, collector.stub), collector, url
    finally:
        fleet.stop()
        if getattr(request.session, "testsfailed", 0):
            print(f"\n--- short-session router log ---\n{fleet.logs()[-4000:]}")
        threading.Thread(target=collector.stub.close, daemon=True).start()
        drop_database(name)
        clear_store_prefix(prefix)


def _stored(pg) -> int:
    return pg("SELECT count(*) FROM module_responses")[0][0]


# -- chat later -------------------------------------------------------------------------------
def test_chat_response_later_reaches_the_collector(pg_router, stubs, pg):
    session = open_session(pg_router, stubs())
    assert pg_router.replies_now(session.entity_id) == []  # the module said nothing inline

    answer = session.respond({"chat_message": "Here is your answer, alice"}, user_id="alice")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": True,
        "entity_id": session.entity_id,
        "response_action": "chat",
    }
    [push] = pg_router.replies(session.entity_id)
    assert push["chat_message"] == "Here is your answer, alice"
    assert push["response_action"] == "chat"
    assert push["session_id"] == session.session_id
    assert push["execution_id"] == session.execution_id
    assert push["module_name"] == session.module
    assert (push["platform"], push["server_id"], push["channel_id"]) == (
        "console",
        session.channel,
        session.channel,
    )
    assert push["user_id"] == "alice"
    [request] = pg_router.reply_requests(session.entity_id)
    assert request.path == "/api/console/responses"
    assert request.headers.get("X-API-Key") == pg_router.api_key

    def delivered():
        rows = pg(
            "SELECT response_action, delivery_status, delivery_attempts, chat_message "
            "FROM module_responses WHERE execution_id = %s",
            (session.execution_id,),
        )
        return rows if rows and rows[0][1] != "pending" else None

    assert wait_until(delivered) == [("chat", "delivered", 1, "Here is your answer, alice")]


def test_session_without_entity_id_is_accepted(pg_router, stubs):
    """entity_id and execution_id are optional: the session alone names the entity."""
    session = open_session(pg_router, stubs())
    answer = pg_router.post(
        RESPONSES, {"session_id": session.session_id, "chat_message": "just the session"}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["entity_id"] == session.entity_id
    [push] = pg_router.replies(session.entity_id)
    assert push["chat_message"] == "just the session" and push["execution_id"] is None


# -- media / ticker / form kept and listed ------------------------------------------------------
def test_media_ticker_form_are_stored_and_listed(pg_router, stubs):
    session = open_session(pg_router, stubs())
    other = open_session(pg_router, stubs())
    mark = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    for body in (MEDIA, TICKER, FORM):
        answer = session.respond(body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["response_action"] == body["response_action"]
    assert other.respond(TICKER, ticker_text="elsewhere").status_code == 202

    answer = pg_router.get(f"{RESPONSES}/{session.execution_id}")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert answer.json()["execution_id"] == session.execution_id
    assert [i["response_action"] for i in items] == ["media", "ticker", "form"]
    media, ticker, form = items
    assert (media["media_type"], media["media_url"]) == ("clip", MEDIA["media_url"])
    assert (ticker["ticker_text"], ticker["ticker_duration"]) == ("Welcome raiders!", 15)
    assert form["response_data"]["form_title"] == "Next game?"
    assert [f["name"] for f in form["response_data"]["form_fields"]] == ["game", "why"]
    assert form["response_data"]["form_fields"][1]["label"] == "why"
    assert form["response_data"]["form_submit_url"] == FORM["form_submit_url"]
    for item in items:
        assert item["session_id"] == session.session_id
        assert item["entity_id"] == session.entity_id
        assert item["module_name"] == session.module
        assert item["delivery_status"] == "published" and item["delivery_attempts"] == 1
        assert item["created_at"]
    assert (
        pg_router.get(f"{RESPONSES}/{other.execution_id}").json()["items"][0]["ticker_text"]
        == "elsewhere"
    )
    assert_error(pg_router.get(f"{RESPONSES}/{uuid.uuid4().hex}"), 404, "execution_id")

    pg_router.sync()  # /recent reads from the replica

    def recent(**params):
        answer = pg_router.get(f"{RESPONSES}/recent", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    listed = recent(entity_id=session.entity_id)
    assert listed["total"] == 3 and listed["page"] == 1
    assert [i["response_action"] for i in listed["items"]] == ["form", "ticker", "media"]
    assert [
        i["response_action"] for i in recent(entity_id=session.entity_id, per_page=2)["items"]
    ] == ["form", "ticker"]
    tickers = recent(response_action="ticker", module_name=session.module)
    assert [i["ticker_text"] for i in tickers["items"]] == ["Welcome raiders!"]
    assert recent(module_name=other.module)["total"] == 1
    both = recent(response_action="ticker", since=mark.isoformat())
    assert {session.entity_id, other.entity_id} <= {i["entity_id"] for i in both["items"]}
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    assert recent(entity_id=session.entity_id, since=future)["total"] == 0
    assert recent(entity_id=session.entity_id, since=mark.isoformat())["total"] == 3
    zulu = mark.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert recent(entity_id=session.entity_id, since=zulu)["total"] == 3
    assert_error(pg_router.get(f"{RESPONSES}/recent", params={"since": "yesterday"}), 400, "since")
    assert_error(
        pg_router.get(f"{RESPONSES}/recent", params={"response_action": "popup"}),
        400,
        "response_action",
    )


# -- refusals: nothing stored ---------------------------------------------------------------
def test_unknown_session_is_404(pg_router, stubs, pg):
    session = open_session(pg_router, stubs())
    before = _stored(pg)
    answer = session.respond(
        {"chat_message": "hello?"}, session_id=uuid.uuid4().hex, execution_id=None
    )
    error = assert_error(answer, 404, "session_id")
    assert error["code"] == "not_found"
    assert_error(pg_router.post(RESPONSES, {"chat_message": "no session"}), 400, "session_id")
    assert_error(
        pg_router.post(RESPONSES, {"session_id": 42, "chat_message": "x"}), 400, "session_id"
    )
    assert_error(session.respond(TICKER, execution_id=uuid.uuid4().hex), 404, "execution_id")
    assert _stored(pg) == before
    time.sleep(0.2)
    assert pg_router.replies_now(session.entity_id) == []


def test_session_of_another_entity_is_403(pg_router, stubs, pg):
    stub = stubs()
    a = open_session(pg_router, stub)
    b = open_session(pg_router, stub)
    before = _stored(pg)
    # session of A, claiming entity B
    error = assert_error(a.respond(MEDIA, entity_id=b.entity_id), 403, "entity_id")
    assert error["code"] == "session_mismatch"
    assert_error(
        a.respond({"chat_message": "x"}, entity_id=b.entity_id, execution_id=None), 403, "entity_id"
    )
    # session of A with an execution of entity B
    error = assert_error(
        a.respond(TICKER, execution_id=b.execution_id, entity_id=None), 403, "session_id"
    )
    assert error["code"] == "session_mismatch"
    # an execution of the same entity but of another session
    c = open_session(pg_router, stub, channel=a.channel)
    assert_error(a.respond(TICKER, execution_id=c.execution_id), 403, "session_id")
    assert _stored(pg) == before
    time.sleep(0.2)
    assert pg_router.replies_now(a.entity_id) == pg_router.replies_now(b.entity_id) == []


def test_invalid_responses_are_400_naming_the_field(pg_router, stubs, pg):
    session = open_session(pg_router, stubs())
    before = _stored(pg)
    cases = [
        ({"response_action": "popup", "chat_message": "x"}, "response_action"),
        (
            {**FORM, "form_fields": [{"name": "color", "type": "colour-wheel"}]},
            "form_fields[0].type",
        ),
        ({k: v for k, v in FORM.items() if k != "form_fields"}, "form_fields"),
        ({**FORM, "form_fields": []}, "form_fields"),
        ({**FORM, "form_fields": [{"name": "c", "type": "select"}]}, "form_fields[0].options"),
        ({**FORM, "form_fields": [{"type": "text"}]}, "form_fields[0].name"),
        ({**FORM, "form_submit_url": "javascript:alert(1)"}, "form_submit_url"),
        ({**MEDIA, "media_type": "hologram"}, "media_type"),
        ({**MEDIA, "media_url": None}, "media_url"),
        ({**TICKER, "ticker_duration": 0}, "ticker_duration"),
        ({"response_action": "ticker"}, "ticker_text"),
        ({"response_action": "chat"}, "chat_message"),
        ({"chat_message": "x", "execution_id": 7}, "execution_id"),
    ]
    for body, field in cases:
        error = assert_error(session.respond(body), 400, field)
        assert error["code"] == "validation_error"
    assert _stored(pg) == before
    answer = pg_router.get(f"{RESPONSES}/{session.execution_id}")
    assert answer.json()["items"] == []


# -- overlay pub/sub ----------------------------------------------------------------------------
def test_overlay_events_are_published_and_kept_for_replay(pg_router, stubs):
    prefix = pg_router.fleet.env["WADDLEBOT_STORE_PREFIX"]
    store = make_store(redis_host=TEST_REDIS_HOST, key_prefix=prefix)
    channel = unique("ovl")
    entity_id = entity(channel)
    try:
        subscription = store.subscribe(f"overlay:{entity_id}")
        with subscription:
            name, command = module_answering(
                pg_router, stubs(), {"responses": [MEDIA, TICKER, FORM]}
            )
            answer = pg_router.chat(f"!{command} bob", channel)
            [execution] = answer["executions"]
            assert execution["status"] == "success", answer
            received = []
            deadline = time.monotonic() + 5
            while len(received) < 3 and time.monotonic() < deadline:
                message = subscription.get(timeout=0.5)
                if message is not None:
                    received.append(message)
            assert len(received) == 3, received
            events = [json.loads(m.data) for m in received]
            assert all(m.channel == f"overlay:{entity_id}" for m in received)
            assert [e["response_action"] for e in events] == ["media", "ticker", "form"]
            for event in events:
                assert event["entity_id"] == entity_id
                assert event["module_name"] == name
                assert isinstance(event["id"], int)
            media, ticker, form = events
            assert media["media_url"] == MEDIA["media_url"] and media["media_type"] == "clip"
            assert ticker["ticker_text"] == "Welcome raiders!" and ticker["ticker_duration"] == 15
            assert form["form_title"] == "Next game?"
            assert [f["type"] for f in form["form_fields"]] == ["radio", "textarea"]

            # a later response goes out the same way
            session = Session(
                pg_router, channel, name, answer["session_id"], execution["execution_id"]
            )
            assert session.respond(TICKER, ticker_text="later").status_code == 202
            message = subscription.get(timeout=5)
            assert message is not None and json.loads(message.data)["ticker_text"] == "later"

        replay = [json.loads(v) for v in store.recent(f"overlay:recent:{entity_id}", 10)]
        assert [e["response_action"] for e in replay] == ["ticker", "form", "ticker", "media"]
        assert [e["id"] for e in replay] == sorted((e["id"] for e in replay), reverse=True)
        assert replay[0]["ticker_text"] == "later"
        # recorded as published, and no chat was pushed for them
        items = pg_router.get(f"{RESPONSES}/{execution['execution_id']}").json()["items"]
        assert [i["delivery_status"] for i in items] == ["published"] * 4
        assert pg_router.replies_now(entity_id) == []
    finally:
        store.close()


# -- expired sessions and delivery retries (own router) ------------------------------------------
def test_expired_session_is_410(short_router, stubs):
    router, _collector, url = short_router
    session = open_session(router, stubs())
    ok = session.respond({"chat_message": "in time"})
    assert ok.status_code == 202, ok.text
    before = run_sql(url, "SELECT count(*) FROM module_responses")[0][0]
    time.sleep(SESSION_TTL + 0.6)
    for body in ({"chat_message": "too late"}, MEDIA):
        error = assert_error(session.respond(body), 410, "session_id")
        assert error["code"] == "session_expired"
    assert run_sql(url, "SELECT count(*) FROM module_responses")[0][0] == before
    # a session id never issued is still unknown, not expired
    assert_error(session.respond(MEDIA, session_id=uuid.uuid4().hex), 404, "session_id")


def test_chat_delivery_is_retried_until_the_collector_answers(short_router, stubs):
    router, collector, url = short_router
    channel = unique("retry")
    collector.fail[entity(channel)] = 2  # 503, 503, then 200
    name, command = module_answering(
        router, stubs(), {"response_action": "chat", "chat_message": "worth the wait"}
    )
    answer = router.chat(f"!{command}", channel)
    [execution] = answer["executions"]
    assert execution["status"] == "success", answer

    pushes = router.replies(entity(channel), 3, timeout=8)
    assert len(pushes) == 3
    assert all(p["chat_message"] == "worth the wait" for p in pushes)

    def recorded():
        rows = run_sql(
            url,
            "SELECT delivery_status, delivery_attempts FROM module_responses "
            "WHERE execution_id = %s",
            (execution["execution_id"],),
        )
        return rows if rows and rows[0][0] != "pending" else None

    assert wait_until(recorded) == [("delivered", 3)]
    time.sleep(0.3)
    assert len(router.replies_now(entity(channel))) == 3  # delivered once, not pushed again
    listed = router.get(f"{RESPONSES}/{execution['execution_id']}").json()["items"]
    assert [(i["delivery_status"], i["delivery_attempts"], i["module_name"]) for i in listed] == [
        ("delivered", 3, name)
    ]


def test_collector_refusal_is_not_retried(short_router, stubs):
    router, collector, url = short_router
    channel = unique("refused")
    collector.status[entity(channel)] = 400
    session = open_session(router, stubs(), channel=channel)
    assert session.respond({"chat_message": "nobody wants me"}).status_code == 202

    def recorded():
        rows = run_sql(
            url,
            "SELECT delivery_status, delivery_attempts FROM module_responses WHERE session_id = %s",
            (session.session_id,),
        )
        return rows if rows and rows[0][0] != "pending" else None

    assert wait_until(recorded) == [("failed", 1)]
    assert len(router.replies_now(entity(channel))) == 1


# -- the embedded default -------------------------------------------------------------------------
def test_responses_on_the_embedded_default(embedded_router, stubs):
    session = open_session(embedded_router, stubs())
    assert session.respond({"chat_message": "embedded later"}).status_code == 202
    assert session.respond(TICKER).status_code == 202
    [push] = embedded_router.replies(session.entity_id)
    assert push["chat_message"] == "embedded later"
    listed = embedded_router.get(
        f"{RESPONSES}/recent", params={"entity_id": session.entity_id}
    ).json()
    assert [i["response_action"] for i in listed["items"]] == ["ticker", "chat"]
    assert listed["items"][0]["delivery_status"] == "published"
    assert_error(session.respond(TICKER, session_id=uuid.uuid4().hex), 404, "session_id")
    other = open_session(embedded_router, stubs())
    assert_error(session.respond(TICKER, entity_id=other.entity_id), 403, "entity_id")
    assert (
        embedded_router.get(f"{RESPONSES}/recent", params={"entity_id": session.entity_id}).json()[
            "total"
        ]
        == 2
    )
