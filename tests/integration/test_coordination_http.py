"""Coordination over HTTP (``/api/router/coordination/…``) on the running router.

Validation (400 naming the field, 404 for an entity nobody coordinates, 401 without
the service key), then a container's life on both stores: channels activated through
``/api/gateway/activate`` become claimable, live ones are claimed first, Discord claims
the whole server, check-in / heartbeat renew, errors past the threshold take an entity
out, release-offline swaps, ``populate`` fills the table from ``servers``.

The ``pg_router`` database is shared with the other router suites, so claims here use
container ids of their own and make their own entities live (live ones are claimed
first) before claiming.
"""

from __future__ import annotations

import pytest
import requests
from conftest import unique

pytestmark = pytest.mark.integration

PREFIX = "/api/router/coordination"


def assert_error(answer, status: int, field: str) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    return error


def ok(answer) -> dict:
    assert answer.status_code == 200, answer.text
    return answer.json()


def activate(router, platform: str, server: str, channel: str) -> str:
    body = ok(
        router.post(
            "/api/gateway/activate",
            {
                "platform": platform,
                "server_id": server,
                "channel_id": channel,
                "owner_user_id": "owner-1",
            },
        )
    )
    return body["entity_id"]


def test_validation_names_the_field(pg_router):
    post = pg_router.post
    for path in ("claim", "release", "checkin", "heartbeat", "release-offline"):
        body = {"platform": "twitch"}
        error = assert_error(post(f"{PREFIX}/{path}", body), 400, "container_id")
        assert error["code"] == "validation_error"
        assert_error(post(f"{PREFIX}/{path}", {**body, "container_id": "  "}), 400, "container_id")
        assert_error(post(f"{PREFIX}/{path}", {**body, "container_id": 7}), 400, "container_id")
        assert_error(
            post(f"{PREFIX}/{path}", {**body, "container_id": "c" * 256}), 400, "container_id"
        )
    for path in ("claim", "release-offline"):
        base = {"container_id": "c1"}
        assert_error(post(f"{PREFIX}/{path}", base), 400, "platform")
        assert_error(post(f"{PREFIX}/{path}", {**base, "platform": "myspace"}), 400, "platform")
        for bad in (0, 101, "5", True, 2.5):
            assert_error(
                post(f"{PREFIX}/{path}", {**base, "platform": "twitch", "max_claims": bad}),
                400,
                "max_claims",
            )
    assert_error(
        post(f"{PREFIX}/release", {"container_id": "c1", "entity_ids": "twitch:a:a"}),
        400,
        "entity_ids",
    )
    assert_error(post(f"{PREFIX}/status", {"is_live": True}), 400, "entity_id")
    assert_error(
        post(f"{PREFIX}/status", {"entity_id": "twitch:x:x", "is_live": "yes"}), 400, "is_live"
    )
    assert_error(
        post(f"{PREFIX}/status", {"entity_id": "twitch:x:x", "viewer_count": -1}),
        400,
        "viewer_count",
    )
    assert_error(post(f"{PREFIX}/error", {"entity_id": "twitch:x:x"}), 400, "error")
    assert_error(post(f"{PREFIX}/error", {"error": "boom"}), 400, "entity_id")
    assert_error(post(f"{PREFIX}/populate", {"platform": "myspace"}), 400, "platform")
    # unknown entity
    missing = f"twitch:{unique('nobody')}:x"
    assert_error(
        post(f"{PREFIX}/status", {"entity_id": missing, "is_live": True}), 404, "entity_id"
    )
    assert_error(post(f"{PREFIX}/error", {"entity_id": missing, "error": "x"}), 404, "entity_id")
    # not JSON
    answer = requests.post(
        pg_router.url + f"{PREFIX}/claim",
        data="{not json",
        headers={**pg_router.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    # the service key is required
    answer = requests.post(
        pg_router.url + f"{PREFIX}/claim",
        json={"container_id": "c1", "platform": "twitch"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert requests.get(pg_router.url + f"{PREFIX}/stats", timeout=10).status_code == 401


def test_discord_container_life_over_http(pg_router):
    guild = unique("guild")
    channels = [activate(pg_router, "discord", guild, c) for c in ("general", "clips", "voice")]
    other = activate(pg_router, "discord", unique("guild"), "general")
    container = unique("discord-pod-")
    post = pg_router.post

    # the guild goes live (with far more viewers than anything else): it is claimed first
    view = ok(post(f"{PREFIX}/status", {"entity_id": channels[0], "is_live": True}))
    assert view["is_live"] is True
    ok(post(f"{PREFIX}/status", {"entity_id": channels[0], "viewer_count": 10**9}))
    claimed = ok(
        post(f"{PREFIX}/claim", {"container_id": container, "platform": "discord", "max_claims": 1})
    )["claimed"]
    assert sorted(c["entity_id"] for c in claimed) == sorted(channels)  # the whole server
    assert {c["claimed_by"] for c in claimed} == {container}
    assert all(c["status"] == "claimed" and c["claim_expires"] for c in claimed)

    listed = ok(pg_router.get(f"{PREFIX}/entities", params={"claimed_by": container}))
    assert listed["total"] == 3
    assert sorted(i["entity_id"] for i in listed["items"]) == sorted(channels)
    stats = ok(pg_router.get(f"{PREFIX}/stats"))
    assert container in stats["containers"] and stats["claimed"] >= 3

    # another container cannot take any channel of that server
    rival = unique("discord-pod-")
    rival_claims = ok(
        post(f"{PREFIX}/claim", {"container_id": rival, "platform": "discord", "max_claims": 1})
    )["claimed"]
    assert not {c["entity_id"] for c in rival_claims} & set(channels)
    ok(post(f"{PREFIX}/release", {"container_id": rival}))

    assert ok(post(f"{PREFIX}/checkin", {"container_id": container}))["renewed"] == 3
    assert ok(post(f"{PREFIX}/heartbeat", {"container_id": container})) == {"extended": 3}

    # a channel that keeps failing is taken out
    for count in range(1, 6):
        answer = ok(
            post(
                f"{PREFIX}/error",
                {
                    "entity_id": channels[2],
                    "container_id": container,
                    "error": "403 Missing Access",
                },
            )
        )
        assert answer["error_count"] == count
    assert answer["status"] == "error"
    errored = ok(pg_router.get(f"{PREFIX}/entities", params={"status": "error"}))
    assert channels[2] in [i["entity_id"] for i in errored["items"]]

    # an empty list releases nothing; then one; then the rest
    assert ok(post(f"{PREFIX}/release", {"container_id": container, "entity_ids": []})) == {
        "released": 0
    }
    released = ok(
        post(f"{PREFIX}/release", {"container_id": container, "entity_ids": [channels[1]]})
    )
    assert released == {"released": 1}
    assert ok(post(f"{PREFIX}/release", {"container_id": container})) == {"released": 1}
    assert ok(pg_router.get(f"{PREFIX}/entities", params={"claimed_by": container}))["total"] == 0
    assert other  # activated, never claimed by this container


def test_twitch_release_offline_over_http(pg_router):
    live = activate(pg_router, "twitch", unique("tw"), "x")
    # twitch entity ids are twitch:<broadcaster>:<broadcaster>; activate keeps what is sent
    container = unique("twitch-pod-")
    post = pg_router.post
    ok(post(f"{PREFIX}/status", {"entity_id": live, "is_live": True, "viewer_count": 10**9}))
    held = ok(
        post(f"{PREFIX}/claim", {"container_id": container, "platform": "twitch", "max_claims": 1})
    )["claimed"]
    assert [c["entity_id"] for c in held] == [live]
    # still live: release-offline keeps it
    answer = ok(
        post(
            f"{PREFIX}/release-offline",
            {"container_id": container, "platform": "twitch", "max_claims": 1},
        )
    )
    assert answer["released"] == []
    assert [c["entity_id"] for c in answer["claimed"]] == [live]
    # the stream ends: released, and something else is claimed in its place
    ok(post(f"{PREFIX}/status", {"entity_id": live, "is_live": False, "viewer_count": 0}))
    fresh = activate(pg_router, "twitch", unique("tw"), "y")
    ok(post(f"{PREFIX}/status", {"entity_id": fresh, "is_live": True, "viewer_count": 10**9}))
    answer = ok(
        post(
            f"{PREFIX}/release-offline",
            {"container_id": container, "platform": "twitch", "max_claims": 1},
        )
    )
    assert answer["released"] == [live]
    assert [c["entity_id"] for c in answer["claimed"]] == [fresh]
    ok(post(f"{PREFIX}/status", {"entity_id": fresh, "is_live": False, "viewer_count": 0}))
    ok(post(f"{PREFIX}/release", {"container_id": container}))


def test_populate_from_servers_over_http(pg_router, pg):
    server = unique("T")
    pg(
        "INSERT INTO servers (platform, server_id, channel, is_active, config) "
        "VALUES ('slack', %s, 'C1', 'T', '{}'), ('slack', %s, 'C2', 'T', '{}')",  # pydal: 'T'
        (server, server),
    )
    first = ok(pg_router.post(f"{PREFIX}/populate", {"platform": "slack"}))
    assert first["created"] >= 2
    again = ok(pg_router.post(f"{PREFIX}/populate", {"platform": "slack"}))
    assert again["created"] == 0 and again["total"] == first["total"]
    listed = ok(pg_router.get(f"{PREFIX}/entities", params={"platform": "slack", "per_page": 500}))
    mine = {i["entity_id"] for i in listed["items"]} & {
        f"slack:{server}:C1",
        f"slack:{server}:C2",
    }
    assert len(mine) == 2
    ok(pg_router.post(f"{PREFIX}/populate"))  # no body: every platform


def test_coordination_on_the_embedded_default(embedded_router):
    """The same flow on SQLite (one process: a lock serialises claimers)."""
    router = embedded_router
    post = router.post
    live = activate(router, "twitch", unique("tw"), "a")
    idle = activate(router, "twitch", unique("tw"), "b")
    ok(post(f"{PREFIX}/status", {"entity_id": live, "is_live": True, "viewer_count": 5}))
    first = ok(
        post(f"{PREFIX}/claim", {"container_id": "pod-a", "platform": "twitch", "max_claims": 1})
    )
    assert [c["entity_id"] for c in first["claimed"]] == [live]
    second = ok(
        post(f"{PREFIX}/claim", {"container_id": "pod-b", "platform": "twitch", "max_claims": 5})
    )["claimed"]
    assert live not in {c["entity_id"] for c in second}
    assert idle in {c["entity_id"] for c in second}
    assert ok(post(f"{PREFIX}/checkin", {"container_id": "pod-a"}))["renewed"] == 1
    stats = ok(router.get(f"{PREFIX}/stats"))
    assert {"pod-a", "pod-b"} <= set(stats["containers"])
    answer = ok(
        post(
            f"{PREFIX}/release-offline",
            {"container_id": "pod-b", "platform": "twitch", "max_claims": 5},
        )
    )
    assert idle in answer["released"]
    ok(post(f"{PREFIX}/release", {"container_id": "pod-a"}))
    ok(post(f"{PREFIX}/release", {"container_id": "pod-b"}))
    # the seeded demo twitch channel has a servers row but was never activated here
    first = ok(post(f"{PREFIX}/populate", {"platform": "twitch"}))
    assert ok(post(f"{PREFIX}/populate", {"platform": "twitch"})) == {
        "created": 0,
        "total": first["total"],
    }
    demo = ok(router.get(f"{PREFIX}/entities", params={"platform": "twitch", "per_page": 500}))
    assert "twitch:demo:demo" in {i["entity_id"] for i in demo["items"]}
    assert_error(post(f"{PREFIX}/claim", {"platform": "twitch"}), 400, "container_id")
