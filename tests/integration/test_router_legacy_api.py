"""The legacy core API the router keeps (DESIGN §3, §8), and the read replica behind lists."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def test_heartbeat_known_and_unknown_module(pg_router, uniq):
    name = uniq("beat")
    pg_router.register_module(name, "http://127.0.0.1:9/", [])

    unknown = pg_router.post("/api/modules/heartbeat", {"module_name": uniq("ghost")})
    known = pg_router.post("/api/modules/heartbeat", {"module_name": name, "status": "degraded"})
    invalid = pg_router.post("/api/modules/heartbeat", {"module_name": name, "status": "sleepy"})

    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "module_name"
    assert known.status_code == 200, known.text
    assert known.json()["module_name"] == name and known.json()["status"] == "degraded"
    assert known.json()["last_heartbeat"]
    assert invalid.status_code == 400 and invalid.json()["error"]["field"] == "status"


def test_gateway_activate_lists_server(pg_router, channel, uniq):
    owner = uniq("owner")
    activated = pg_router.post(
        "/api/gateway/activate",
        {
            "platform": "twitch",
            "server_id": channel,
            "channel_id": channel,
            "owner_user_id": owner,
            "config": {"greeting": "hi"},
        },
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["entity_id"] == f"twitch:{channel}:{channel}"
    assert activated.json()["is_active"] is True
    assert isinstance(activated.json()["community_id"], int)
    pg_router.sync()

    listed = pg_router.get(
        "/api/servers", params={"platform": "twitch", "active": "true", "per_page": 500}
    )

    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert set(body) >= {"items", "page", "per_page", "total"}
    [server] = [s for s in body["items"] if s["server_id"] == channel]
    assert server["platform"] == "twitch" and server["channel"] == channel
    assert server["owner"] == owner and server["is_active"] is True
    assert server["config"] == {"greeting": "hi"}
    assert all(s["platform"] == "twitch" and s["is_active"] for s in body["items"])
    discord = pg_router.get("/api/servers", params={"platform": "discord"}).json()["items"]
    assert channel not in {s["server_id"] for s in discord}
    # the owner given at activation owns the new community
    event = pg_router.send(
        {
            "platform": "twitch",
            "server_id": channel,
            "channel_id": channel,
            "user_id": owner,
            "user_name": owner,
            "message_type": "chatMessage",
            "message_content": "!help",
        }
    )
    assert event["status"] == "processed"


def test_context_creates_user_once(pg_router, pg, uniq):
    user = uniq("ctx")
    before = pg("SELECT count(*) FROM users")[0][0]

    first = pg_router.post(
        "/api/context", {"platform": "discord", "user_id": user, "user_name": "Carol"}
    )
    second = pg_router.post(
        "/api/context", {"platform": "discord", "user_id": user, "user_name": "Carol"}
    )

    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    assert first.json()["user"]["display_name"] == "Carol"
    assert first.json()["identities"] == [
        {"platform": "discord", "platform_user_id": user, "platform_username": "Carol"}
    ]
    assert pg("SELECT count(*) FROM users")[0][0] == before + 1
    bad = pg_router.post("/api/context", {"platform": "myspace", "user_id": user, "user_name": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "platform"


def test_post_reputation_raid(pg_router, channel, uniq):
    user = uniq("raider")
    entity_id = f"twitch:{channel}:{channel}"
    pg_router.post(
        "/api/gateway/activate",
        {"platform": "twitch", "server_id": channel, "channel_id": channel},
    )

    first = pg_router.post(
        "/api/reputation", {"entity_id": entity_id, "user_id": user, "activity_type": "raid"}
    )
    second = pg_router.post(
        "/api/reputation", {"entity_id": entity_id, "user_id": user, "activity_type": "raid"}
    )
    bits = pg_router.post(
        "/api/reputation",
        {"entity_id": entity_id, "user_id": user, "activity_type": "bits", "amount": 7},
    )

    assert first.status_code == 200, first.text
    assert first.json()["awarded"] == 30 and first.json()["points"] == 30
    assert second.json()["points"] == 60
    assert bits.json()["awarded"] == 7 and bits.json()["points"] == 67
    standing = pg_router.get("/api/reputation", params={"entity_id": entity_id, "user_id": user})
    assert standing.json()["points"] == 67
    unknown = pg_router.post(
        "/api/reputation", {"entity_id": entity_id, "user_id": user, "activity_type": "dance"}
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "activity_type"
    nowhere = pg_router.post(
        "/api/reputation",
        {"entity_id": "twitch:nope:nope", "user_id": user, "activity_type": "raid"},
    )
    assert nowhere.status_code == 404 and nowhere.json()["error"]["field"] == "entity_id"


# -- replica ----------------------------------------------------------------------------------
def test_commands_listed_from_replica_and_health(pg_router, uniq):
    name, command = uniq("listed"), uniq("lst")
    pg_router.register_module(
        name,
        "http://127.0.0.1:9",
        [{"command": command, "prefix": "#", "description": "listed one", "rate_limit": 5}],
    )

    listed = pg_router.get("/api/router/commands", params={"module": name})
    # the replica is shared with other suites that may stop it for a moment: wait for
    # it to be back (the router retries it after a short back-off) rather than flake
    deadline = time.monotonic() + 20
    while True:
        health = pg_router.get("/api/router/health", headers={})
        replica = health.json().get("database", {}).get("replica", {})
        if replica.get("status") == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.25)

    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert listed.json()["total"] == 1
    assert item["command"] == command and item["prefix"] == "#"
    assert item["location"] == "community" and item["type"] == "container"
    assert item["rate_limit"] == 5 and item["is_active"] is True
    assert item["module_name"] == name and item["description"] == "listed one"
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert health.json()["database"]["primary"]["status"] == "ok"
    assert health.json()["database"]["replica"]["status"] == "ok"
    assert health.json()["store"]["backend"] == "redis"
    metrics = pg_router.get("/api/router/metrics")
    assert metrics.status_code == 200
    assert "replica_fallbacks" in metrics.json()["database"]
