"""Who may run what, how often, and once: roles, enabled modules, rate limits, de-duplication.

User levels: the higher of the collector's badges and ``community_rbac`` (DESIGN §5).
Non-core modules run only where a ``command_permissions`` row switches them on.
"""

from __future__ import annotations

import time

import pytest

from waddlebot.testkit import chat_event

pytestmark = pytest.mark.integration

ANSWER = {"response_action": "chat", "chat_message": "ok from module"}


def _module(router, stubs, uniq, **spec):
    """A container module with one command; returns (command, module name, stub)."""
    stub = stubs()
    stub.route("POST", r"/run", ANSWER)
    command, name = uniq("cmd"), uniq("mod")
    core = spec.pop("core", True)
    router.register_module(
        name, stub.url, [{"command": command, "location_url": "/run", **spec}], core=core
    )
    return command, name, stub


# -- roles ----------------------------------------------------------------------------------
def test_member_denied_moderator_command(pg_router, stubs, channel, uniq):
    command, _, stub = _module(pg_router, stubs, uniq, min_role="moderator")

    answer = pg_router.chat(f"!{command}", channel, user=uniq("u"), user_name="Pleb")

    [execution] = answer["executions"]
    assert execution["status"] == "denied"
    assert stub.received() == []
    [reply] = pg_router.replies(f"console:{channel}:{channel}")
    assert "moderator" in reply["chat_message"]
    assert "@Pleb" in reply["chat_message"] and f"!{command}" in reply["chat_message"]


def test_platform_moderator_badge_allows(pg_router, stubs, channel, uniq):
    command, _, stub = _module(pg_router, stubs, uniq, min_role="moderator")

    answer = pg_router.chat(f"!{command}", channel, user=uniq("u"), roles=["moderator"])

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [call] = stub.received()
    assert call.json["user"]["role"] == "moderator"
    [reply] = pg_router.replies(f"console:{channel}:{channel}")
    assert reply["chat_message"] == "ok from module"


def test_role_stored_in_community_rbac_allows(pg_router, stubs, pg, channel, uniq):
    command, _, stub = _module(pg_router, stubs, uniq, min_role="moderator")
    user = uniq("u")
    entity_id = f"console:{channel}:{channel}"
    # first sight of the channel creates the entity and its community (no command: no role)
    assert pg_router.chat("hello there", channel, user=user)["status"] == "processed"
    bot_user = pg_router.post(
        "/api/context", {"platform": "console", "user_id": user, "user_name": user}
    ).json()["user"]
    community_id = pg_router.get(
        "/api/reputation", params={"entity_id": entity_id, "user_id": user}
    ).json()["community_id"]
    pg(
        "INSERT INTO community_rbac (community_id, user_id, role, assigned_by, assigned_at)"
        " VALUES (%s, %s, 'moderator', 'test', now())",
        (community_id, bot_user["id"]),
    )
    pg_router.sync()

    answer = pg_router.chat(f"!{command}", channel, user=user)

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [call] = stub.received()
    assert call.json["user"] == {
        "id": bot_user["id"],
        "platform_user_id": user,
        "name": user,
        "role": "moderator",
    }


# -- enabled per entity -----------------------------------------------------------------------
def test_non_core_command_disabled_until_enabled(pg_router, stubs, pg, channel, uniq):
    command, name, stub = _module(pg_router, stubs, uniq, core=False)
    entity_id = f"console:{channel}:{channel}"

    refused = pg_router.chat(f"!{command}", channel)

    [execution] = refused["executions"]
    assert execution["status"] == "disabled"
    assert stub.received() == []
    [reply] = pg_router.replies(entity_id)
    assert "not enabled" in reply["chat_message"] and f"!{command}" in reply["chat_message"]

    command_id = pg_router.command_id(name, command)
    pg(
        "INSERT INTO command_permissions (command_id, entity_id, is_enabled, usage_count)"
        " VALUES (%s, %s, 'T', 0)",  # pydal booleans are char(1) T/F
        (command_id, entity_id),
    )
    pg_router.sync()
    time.sleep(0.6)  # ROUTER_COMMAND_CACHE_TTL is 0.5 s in the test fleet

    allowed = pg_router.chat(f"!{command}", channel)

    [execution] = allowed["executions"]
    assert execution["status"] == "success", execution
    assert len(stub.received()) == 1
    [(usage,)] = pg(
        "SELECT usage_count FROM command_permissions WHERE command_id = %s AND entity_id = %s",
        (command_id, entity_id),
    )
    assert usage == 1
    # other channels stay off
    elsewhere = pg_router.chat(f"!{command}", channel + "x")
    assert elsewhere["executions"][0]["status"] == "disabled"


# -- rate limit and de-duplication (both fleets) ---------------------------------------------
def test_rate_limit_per_command(any_router, stubs, channel, uniq):
    command, _, stub = _module(any_router, stubs, uniq, rate_limit=3)
    user = uniq("u")

    statuses = [
        any_router.chat(f"!{command}", channel, user=user)["executions"][0]["status"]
        for _ in range(4)
    ]

    assert statuses == ["success", "success", "success", "rate_limited"]
    assert len(stub.received()) == 3
    # the limit is per user: someone else still gets through
    other = any_router.chat(f"!{command}", channel, user=uniq("u"))
    assert other["executions"][0]["status"] == "success"


def test_rate_limit_counts_each_event_once_and_holds_inside_a_batch(
    any_router, stubs, channel, uniq
):
    command, _, stub = _module(any_router, stubs, uniq, rate_limit=2)
    user = uniq("u")
    first = chat_event(f"!{command}", channel=channel, user=user)
    assert any_router.send(first)["executions"][0]["status"] == "success"
    # a collector's redelivery is a duplicate: it does not use up the user's limit
    assert any_router.send(first)["status"] == "duplicate"
    # three more in one batch: one fits in the limit of 2, the others are refused
    batch = [chat_event(f"!{command}", channel=channel, user=user) for _ in range(3)]
    answer = any_router.post("/api/router/events/batch", {"events": batch})
    assert answer.status_code == 200, answer.text
    statuses = sorted(r["executions"][0]["status"] for r in answer.json()["results"])
    assert statuses == ["rate_limited", "rate_limited", "success"]
    assert len(stub.received()) == 2


def test_usage_counts_reach_the_catalogue_within_seconds(any_router, stubs, channel, uniq):
    command, name, _stub = _module(any_router, stubs, uniq)
    for _ in range(3):
        any_router.chat(f"!{command}", channel, user=uniq("u"))
    deadline = time.monotonic() + 15
    while True:
        listed = any_router.get(f"/api/router/commands?module={name}").json()["items"]
        if listed[0]["usage_count"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed[0]["usage_count"] == 3  # summed in memory, written every five seconds


def test_duplicate_event_processed_once(any_router, stubs, channel, uniq):
    command, _, stub = _module(any_router, stubs, uniq)
    event = chat_event(f"!{command}", channel=channel, user=uniq("u"))

    first = any_router.send(event)
    second = any_router.send(event)

    assert first["status"] == "processed"
    assert first["executions"][0]["status"] == "success"
    assert second["status"] == "duplicate"
    assert second["event_id"] == event["event_id"]
    assert "executions" not in second or second["executions"] == []
    assert len(stub.received()) == 1
    time.sleep(0.2)
    assert len(any_router.replies_now(f"console:{channel}:{channel}")) == 1
