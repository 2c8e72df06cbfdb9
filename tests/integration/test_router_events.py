"""The event contract at the edge: batches, bad payloads, non-chat events (DESIGN §5, §8)."""

from __future__ import annotations

import json

import pytest
import requests

from waddlebot.testkit import chat_event, platform_event

pytestmark = pytest.mark.integration

COUNTED = ("entities", "communities", "users", "user_identities", "command_executions")


def _counts(pg) -> dict[str, int]:
    return {table: pg(f"SELECT count(*) FROM {table}")[0][0] for table in COUNTED}


# -- batches ----------------------------------------------------------------------------------
def test_batch_of_100_processed_in_input_order(pg_router, stubs, channel, uniq):
    stub = stubs()
    stub.route(
        "POST",
        r"/echo",
        lambda request: {
            "response_action": "chat",
            "chat_message": f"echo {request.json['args_text']}",
        },
    )
    command = uniq("echo")
    pg_router.register_module(
        uniq("echomod"), stub.url, [{"command": command, "location_url": "/echo"}]
    )
    users = [uniq("u") for _ in range(5)]  # new users, seen concurrently for the first time
    events = [
        chat_event(f"!{command} {i}", channel=channel, user=users[i % len(users)])
        for i in range(100)
    ]

    answer = requests.post(
        pg_router.url + "/api/router/events/batch",
        json={"events": events},
        headers=pg_router.headers,
        timeout=60,
    )

    assert answer.status_code == 200, answer.text[:2000]
    results = answer.json()["results"]
    assert len(results) == 100
    assert [r.get("event_id") for r in results] == [e["event_id"] for e in events]
    assert all(r["status"] == "processed" for r in results), [
        r for r in results if r.get("status") != "processed"
    ][:3]
    assert [r["executions"][0]["status"] for r in results] == ["success"] * 100
    assert len({r["session_id"] for r in results}) == 100
    # every event reached the module once, and each answer carries that event's session
    calls = {int(c.json["args_text"]): c.json for c in stub.received("POST", r"/echo")}
    assert sorted(calls) == list(range(100))
    for i, result in enumerate(results):
        assert calls[i]["session_id"] == result["session_id"]
        assert calls[i]["execution_id"] == result["executions"][0]["execution_id"]
        assert calls[i]["user"]["platform_user_id"] == events[i]["user_id"]
    # five people, five bot users: concurrent first sight created each once
    assert len({c["user"]["id"] for c in calls.values()}) == 5
    pg_router.replies(f"console:{channel}:{channel}", 100, timeout=15)


def test_batch_of_101_refused(pg_router, channel):
    events = [chat_event(f"hi {i}", channel=channel) for i in range(101)]

    answer = pg_router.post("/api/router/events/batch", {"events": events})

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == "events" and error["code"] == "validation_error"
    assert "100" in error["message"]
    # nothing of it was processed
    entities = pg_router.get(
        "/api/router/entities", params={"platform": "console", "per_page": 500}
    )
    assert f"console:{channel}:{channel}" not in {e["entity_id"] for e in entities.json()["items"]}


def test_batch_with_one_invalid_event(pg_router, stubs, channel, uniq):
    stub = stubs()
    stub.route("POST", r"/run", {"response_action": "chat", "chat_message": "fine"})
    command = uniq("bat")
    pg_router.register_module(
        uniq("batmod"), stub.url, [{"command": command, "location_url": "/run"}]
    )
    broken = chat_event(f"!{command}", channel=channel)
    del broken["message_type"]
    events = [
        chat_event(f"!{command}", channel=channel),
        broken,
        chat_event(f"!{command}", channel=channel),
    ]

    answer = pg_router.post("/api/router/events/batch", {"events": events})

    assert answer.status_code == 200, answer.text
    first, middle, last = answer.json()["results"]
    assert middle["error"]["field"] == "message_type"
    assert middle["error"]["code"] == "validation_error"
    for result, event in ((first, events[0]), (last, events[2])):
        assert result["status"] == "processed" and result["event_id"] == event["event_id"]
        assert result["executions"][0]["status"] == "success"
    assert len(stub.received()) == 2


# -- bad payloads: 4xx naming the field, nothing written ------------------------------------------
def _event(channel: str, **changes) -> dict:
    event = chat_event("!help", channel=channel, user="mallory")
    for key, value in changes.items():
        if value is _DROP:
            del event[key]
        else:
            event[key] = value
    return event


_DROP = object()
BAD = [
    pytest.param(lambda c: _event(c, server_id=12345), 400, "server_id", id="server_id-number"),
    pytest.param(
        lambda c: _event(c, message_type=_DROP), 400, "message_type", id="no-message_type"
    ),
    pytest.param(
        lambda c: _event(c, message_type="dance"), 400, "message_type", id="unknown-message_type"
    ),
    pytest.param(lambda c: _event(c, platform="myspace"), 400, "platform", id="unknown-platform"),
    pytest.param(
        lambda c: _event(c, message_content="x" * 4001), 400, "message_content", id="huge-message"
    ),
    pytest.param(
        lambda c: _event(c, user_roles="moderator"), 400, "user_roles", id="roles-not-list"
    ),
    pytest.param(lambda c: _event(c, metadata=[1]), 400, "metadata", id="metadata-not-object"),
    pytest.param(
        lambda c: b'{"platform": "console", "server_id": ', 400, "body", id="invalid-json"
    ),
    pytest.param(lambda c: json.dumps([_event(c)]).encode(), 400, "body", id="non-object-body"),
]


@pytest.mark.parametrize("build, status, field", BAD)
def test_bad_event_refused_and_nothing_written(pg_router, pg, channel, build, status, field):
    body = build(channel)
    before = _counts(pg)

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.post(
        pg_router.url + "/api/router/events",
        data=data,
        headers={**pg_router.headers, "Content-Type": "application/json"},
        timeout=10,
    )

    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    assert error["code"] == "validation_error"
    assert _counts(pg) == before


@pytest.mark.parametrize(
    "headers, status", [({}, 401), ({"X-API-Key": "not-the-key"}, 403)], ids=["no-key", "wrong-key"]
)
def test_event_without_valid_key_refused(pg_router, pg, channel, headers, status):
    before = _counts(pg)

    answer = requests.post(
        pg_router.url + "/api/router/events", json=_event(channel), headers=headers, timeout=10
    )

    assert answer.status_code == status
    assert answer.json()["error"]["field"] == "X-API-Key"
    assert _counts(pg) == before


# -- non-chat events --------------------------------------------------------------------------
def test_twitch_activity_earns_reputation(pg_router, channel, uniq):
    user = uniq("viewer")
    entity_id = f"twitch:{channel}:{channel}"

    follow = pg_router.send(platform_event("follow", channel=channel, user=user))
    raid = pg_router.send(
        platform_event("raid", channel=channel, user=user, metadata={"viewers": 42})
    )
    cheer = pg_router.send(
        platform_event("cheer", channel=channel, user=user, metadata={"amount": 250})
    )

    assert follow["entity_id"] == entity_id
    assert [a["reputation"] for a in (follow, raid, cheer)] == [
        {"points": 10, "total": 10},
        {"points": 30, "total": 40},
        {"points": 250, "total": 290},
    ]
    standing = pg_router.get("/api/reputation", params={"entity_id": entity_id, "user_id": user})
    assert standing.status_code == 200, standing.text
    assert standing.json()["points"] == 290
    assert standing.json()["user"]["platform_user_id"] == user
    # another viewer of the same channel is untouched
    other = pg_router.get(
        "/api/reputation", params={"entity_id": entity_id, "user_id": uniq("viewer")}
    )
    assert other.json()["points"] == 0


def test_event_triggered_module_called_on_follow(pg_router, stubs, channel, uniq):
    stub = stubs()
    stub.route(
        "POST", r"/on-follow", {"response_action": "chat", "chat_message": "thanks for the follow"}
    )
    name, command, user = uniq("greeter"), uniq("greet"), uniq("fan")
    pg_router.register_module(
        name,
        stub.url,
        [
            {
                "command": command,
                "location_url": "/on-follow",
                "trigger_type": "event",
                "event_types": ["follow"],
            }
        ],
    )
    try:
        cheer = pg_router.send(
            platform_event("cheer", channel=channel, user=user, metadata={"amount": 5})
        )
        answer = pg_router.send(
            platform_event("follow", channel=channel, user=user, metadata={"tier": "1"})
        )
        # an event trigger is not a chat command
        chat = pg_router.chat(f"!{command}", channel)
    finally:
        pg_router.register_module(name, stub.url, [])  # deactivate for the rest of the session

    assert cheer["executions"] == []
    assert answer["matched"]["event_triggers"] == [f"!{command}"]
    [execution] = answer["executions"]
    assert execution["status"] == "success" and execution["module"] == name
    [call] = stub.received()
    assert call.json["message_type"] == "follow"
    assert call.json["command"] is None
    assert call.json["user"]["platform_user_id"] == user
    assert call.json["metadata"] == {"tier": "1"}
    assert call.json["entity_id"] == f"twitch:{channel}:{channel}"
    [reply] = pg_router.replies(f"twitch:{channel}:{channel}")
    assert reply["chat_message"] == "thanks for the follow" and reply["platform"] == "twitch"
    assert chat["matched"].get("unknown_command") == f"!{command}"
