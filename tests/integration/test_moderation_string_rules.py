"""String rules over HTTP (``/api/router/string-rules``) acting on real chat events.

The router runs as a real process (``pg_router``: PostgreSQL primary + replica and
Redis; a few also on ``embedded_router``: SQLite and the in-process store). Chat lines
that are not commands go through the string rules of their entity; the first matching
rule by priority acts: ``warn`` (a chat reply pushed to the console collector stub),
``block`` (a push carrying ``"moderation": {"action": "delete", ...}``), ``command``
(the command runs through the normal path with the rule's parameters as arguments) or
``webhook`` (the message and its context POSTed to a URL).

String rules apply to every entity listed in ``enabled_entity_ids``; each test scopes
its rules to channels of its own so the other suites sharing the router never see them.
"""

from __future__ import annotations

import datetime
import re
import time

import pytest
import requests
from conftest import unique

from waddlebot.testkit import chat_event

pytestmark = pytest.mark.integration

RULES = "/api/router/string-rules"


def entity(channel: str) -> str:
    return f"console:{channel}:{channel}"


def create_rule(router, **fields) -> dict:
    """POST a rule (201); it applies from the next message on (no replica wait)."""
    answer = router.post(RULES, fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def warn_rule(router, channel: str, string: str, match_type: str, **extra) -> dict:
    return create_rule(
        router,
        string=string,
        match_type=match_type,
        action="warn",
        warning_message=extra.pop("warning_message", f"warned by {match_type} {string}"),
        enabled_entity_ids=extra.pop("enabled_entity_ids", [entity(channel)]),
        **extra,
    )


def matched_rule(answer: dict) -> int | None:
    rule = answer["matched"]["string_rule"]
    return rule["id"] if rule else None


def put(router, path: str, body: dict):
    return requests.put(router.url + path, json=body, headers=router.headers, timeout=30)


def delete(router, path: str):
    return requests.delete(router.url + path, headers=router.headers, timeout=30)


def assert_error(answer, status: int, field: str) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    return error


# -- every match type -------------------------------------------------------------------
MATCH_CASES = [
    # match_type, rule string, lines that match, lines that do not
    ("exact", "hello there", ["hello there", "  HELLO There "], ["hello there friend", "hello"]),
    ("contains", "spam", ["this is SPAMMY", "spam"], ["sp am", "nothing here"]),
    ("word", "cat", ["my cat is here", "CAT!", "cat"], ["concatenate", "cats", "tomcat"]),
    (
        "regex",
        r"free\s+v-?bucks",
        ["get FREE   vbucks now", "free v-bucks"],
        ["freevbucks", "free bucks"],
    ),
    ("*", "*", ["anything at all", "x"], []),
]


@pytest.mark.parametrize(
    "match_type,string,hits,misses", MATCH_CASES, ids=[c[0] for c in MATCH_CASES]
)
def test_match_types_warn_the_user(pg_router, match_type, string, hits, misses):
    channel = unique("mt")
    rule = warn_rule(pg_router, channel, string, match_type)
    for line in misses:
        answer = pg_router.chat(line, channel)
        assert answer["status"] == "processed"
        assert matched_rule(answer) is None, (line, answer)
    for line in hits:
        answer = pg_router.chat(line, channel, user="mallory")
        assert answer["matched"]["string_rule"] == {
            "id": rule["id"],
            "action": "warn",
            "match_type": match_type,
        }, (line, answer)
        assert answer["executions"] == []
    replies = pg_router.replies(entity(channel), len(hits))
    assert len(replies) == len(hits)
    for reply in replies:
        assert reply["chat_message"] == f"warned by {match_type} {string}"
        assert reply["user_id"] == "mallory"
        assert reply["platform"] == "console"
        assert reply["module_name"] == "router"
        assert "moderation" not in reply
    # a command is never moderated by a rule: it goes to the command path
    assert matched_rule(pg_router.chat(f"!{unique('nosuch')} {hits[0]}", channel)) is None


def test_default_warning_names_the_user(pg_router):
    channel = unique("mt")
    create_rule(
        pg_router, string="darn", action="warn", enabled_entity_ids=[entity(channel)]
    )  # match_type defaults to contains
    pg_router.chat("oh darn it", channel, user="u1", user_name="Zed")
    [reply] = pg_router.replies(entity(channel))
    assert "@Zed" in reply["chat_message"]


@pytest.mark.parametrize("router_kind", ["postgres", "embedded"])
def test_warn_and_block_on_both_stores(request, router_kind):
    router = request.getfixturevalue(
        "pg_router" if router_kind == "postgres" else "embedded_router"
    )
    channel = unique("both")
    warn = warn_rule(router, channel, "heck", "word", priority=20)
    block = create_rule(
        router,
        string=r"https?://\S+",
        match_type="regex",
        action="block",
        block_message="links are not allowed here",
        enabled_entity_ids=[entity(channel)],
        priority=10,
    )
    answer = router.chat("what the heck", channel)
    assert matched_rule(answer) == warn["id"]
    answer = router.chat("heck, see http://spam.example/x", channel)
    assert matched_rule(answer) == block["id"]  # both match, block has the lower priority
    replies = router.replies(entity(channel), 2)
    assert sorted(r.get("chat_message") for r in replies) == [
        "links are not allowed here",
        "warned by word heck",
    ]
    [blocked] = [r for r in replies if "moderation" in r]
    assert blocked["moderation"]["action"] == "delete"


# -- actions ---------------------------------------------------------------------------
def test_block_deletes_the_message(pg_router):
    channel = unique("blk")
    rule = create_rule(
        pg_router,
        string="buy followers",
        match_type="contains",
        action="block",
        block_message="Message removed: no advertising.",
        enabled_entity_ids=[entity(channel)],
    )
    event = chat_event(
        "Buy Followers at cheap.example", channel=channel, metadata={"message_id": "msg-42"}
    )
    answer = pg_router.send(event)
    assert answer["matched"]["string_rule"]["action"] == "block"
    assert matched_rule(answer) == rule["id"]
    pg_router.replies(entity(channel))  # wait for the push
    [push] = pg_router.reply_requests(entity(channel))
    body = push.json
    assert push.path == "/api/console/responses"
    assert push.headers.get("X-API-Key") == pg_router.api_key
    assert body["moderation"] == {"action": "delete", "message_id": "msg-42"}
    assert body["chat_message"] == "Message removed: no advertising."
    assert body["user_id"] == event["user_id"]

    # without a platform message id, the event id identifies the message
    second = chat_event("buy followers now", channel=channel)
    pg_router.send(second)
    pushes = pg_router.replies(entity(channel), 2)
    assert pushes[1]["moderation"] == {"action": "delete", "message_id": second["event_id"]}


def test_block_without_message_still_deletes(pg_router):
    channel = unique("blk")
    create_rule(
        pg_router,
        string="slur",
        match_type="word",
        action="block",
        enabled_entity_ids=[entity(channel)],
    )
    event = chat_event("a slur here", channel=channel, metadata={"message_id": "m-7"})
    pg_router.send(event)
    [push] = pg_router.replies(entity(channel))
    assert push["moderation"] == {"action": "delete", "message_id": "m-7"}
    assert not push.get("chat_message")


def test_command_action_runs_the_module_with_the_rule_parameters(pg_router, stubs, uniq):
    module = stubs()
    module.route(
        "POST",
        r"/run",
        lambda request: {
            "response_action": "chat",
            "chat_message": "timeout applied to " + " ".join(request.json["args"]),
        },
    )
    name, command = uniq("mod-"), uniq("tmo")
    pg_router.register_module(name, module.url, [{"command": command, "location_url": "/run"}])
    channel = unique("cmd")
    create_rule(
        pg_router,
        string="raid incoming",
        match_type="contains",
        action="command",
        command_to_execute=f"!{command.upper()}",
        command_parameters=["mallory", "600 seconds"],
        enabled_entity_ids=[entity(channel)],
    )

    answer = pg_router.chat("RAID INCOMING lol", channel, user="mallory")
    assert answer["matched"]["string_rule"]["action"] == "command"
    [execution] = answer["executions"]
    assert execution["status"] == "success", answer
    assert execution["module"] == name
    [call] = module.received("POST", r"/run")
    payload = call.json
    assert payload["command"] == command
    assert payload["prefix"] == "!"
    assert payload["args"] == ["mallory", "600 seconds"]
    assert payload["args_text"] == "mallory 600 seconds"
    assert payload["entity_id"] == entity(channel)
    assert payload["session_id"] == answer["session_id"]
    assert payload["execution_id"] == execution["execution_id"]
    assert payload["message_content"] == "RAID INCOMING lol"
    assert payload["user"]["platform_user_id"] == "mallory"
    [reply] = pg_router.replies(entity(channel))
    assert reply["chat_message"] == "timeout applied to mallory 600 seconds"
    assert reply["execution_id"] == execution["execution_id"]


def test_webhook_action_posts_message_and_context(pg_router, stubs):
    hook = stubs()
    hook.route("POST", r"/hooks/mod", {"ok": True})
    channel = unique("hook")
    rule = create_rule(
        pg_router,
        string="report",
        match_type="word",
        action="webhook",
        webhook_url=f"{hook.url}/hooks/mod",
        enabled_entity_ids=[entity(channel)],
    )
    event = chat_event("I want to REPORT someone", channel=channel, user="carol")
    answer = pg_router.send(event)
    assert matched_rule(answer) == rule["id"]
    [call] = hook.wait_for(1, method="POST", path=r"/hooks/mod")
    body = call.json
    assert body["rule_id"] == rule["id"]
    assert body["message_content"] == "I want to REPORT someone"
    assert body["entity_id"] == entity(channel)
    assert body["session_id"] == answer["session_id"]
    assert isinstance(body["community_id"], int)
    assert body["event"]["user_id"] == "carol"
    assert body["event"]["event_id"] == event["event_id"]
    assert body["event"]["channel_id"] == channel
    assert pg_router.replies_now(entity(channel)) == []  # no chat reply for a webhook


# -- priority, scope, case ----------------------------------------------------------------
def test_lower_priority_number_wins(pg_router):
    channel = unique("prio")
    # created first with the higher number, so id order is the opposite of priority order
    late = warn_rule(pg_router, channel, "noob", "contains", priority=50, warning_message="p50")
    early = warn_rule(pg_router, channel, "noob", "word", priority=5, warning_message="p5")
    answer = pg_router.chat("you noob", channel)
    assert matched_rule(answer) == early["id"]
    # only the later-priority rule matches (no word boundary): it fires
    answer = pg_router.chat("noobish", channel)
    assert matched_rule(answer) == late["id"]
    replies = pg_router.replies(entity(channel), 2)
    assert [r["chat_message"] for r in replies] == ["p5", "p50"]
    # the winner moves down below the other: the other wins now
    answer = put(pg_router, RULES + f"/{early['id']}", {"priority": 60})
    assert answer.status_code == 200, answer.text
    assert matched_rule(pg_router.chat("you noob", channel)) == late["id"]


def test_rule_for_entity_a_does_not_fire_in_entity_b(pg_router):
    a, b = unique("ea"), unique("eb")
    rule = warn_rule(pg_router, a, "forbidden", "contains")
    assert matched_rule(pg_router.chat("forbidden word", b)) is None
    assert matched_rule(pg_router.chat("forbidden word", a)) == rule["id"]
    # same server, other channel: another entity
    assert matched_rule(pg_router.send(chat_event("forbidden", channel=b, server=a))) is None
    pg_router.replies(entity(a))
    time.sleep(0.3)
    assert pg_router.replies_now(entity(b)) == []
    listed = pg_router.get(RULES, params={"entity_id": entity(a)}).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]
    listed = pg_router.get(RULES, params={"entity_id": entity(b)}).json()
    assert rule["id"] not in [r["id"] for r in listed["items"]]


def test_rule_for_several_entities(pg_router):
    a, b, c = unique("ma"), unique("mb"), unique("mc")
    rule = warn_rule(pg_router, a, "zap", "word", enabled_entity_ids=[entity(a), entity(b)])
    assert matched_rule(pg_router.chat("zap", a)) == rule["id"]
    assert matched_rule(pg_router.chat("zap", b)) == rule["id"]
    assert matched_rule(pg_router.chat("zap", c)) is None


def test_case_sensitivity(pg_router):
    channel = unique("case")
    sensitive = warn_rule(pg_router, channel, "BadWord", "contains", case_sensitive=True)
    insensitive = warn_rule(pg_router, channel, "straße", "word", priority=200)
    regex = warn_rule(pg_router, channel, r"^SHOUT\d+$", "regex", case_sensitive=True, priority=300)
    assert matched_rule(pg_router.chat("badword", channel)) is None
    assert matched_rule(pg_router.chat("BADWORD", channel)) is None
    assert matched_rule(pg_router.chat("a BadWord here", channel)) == sensitive["id"]
    assert matched_rule(pg_router.chat("STRASSE", channel)) == insensitive["id"]  # casefold
    assert matched_rule(pg_router.chat("Straße!", channel)) == insensitive["id"]
    assert matched_rule(pg_router.chat("shout42", channel)) is None
    assert matched_rule(pg_router.chat("SHOUT42", channel)) == regex["id"]


# -- validation and CRUD -------------------------------------------------------------------
def test_validation_names_the_field(pg_router):
    e = [entity(unique("val"))]
    before = pg_router.get(RULES, params={"include_inactive": "1", "per_page": 1}).json()["total"]
    cases = [
        ({"string": "(unclosed", "match_type": "regex", "action": "warn"}, "string"),
        ({"string": "x", "match_type": "fuzzy", "action": "warn"}, "match_type"),
        ({"string": "x", "match_type": "contains", "action": "ban"}, "action"),
        ({"string": "x", "action": "webhook", "webhook_url": "ftp://example.org/h"}, "webhook_url"),
        (
            {"string": "x", "action": "webhook", "webhook_url": "http://169.254.169.254/latest"},
            "webhook_url",
        ),
        ({"string": "x", "action": "webhook"}, "webhook_url"),
        ({"string": "x", "action": "command"}, "command_to_execute"),
        ({"string": "x", "action": "command", "command_to_execute": "so"}, "command_to_execute"),
        ({"string": "x", "action": "warn", "priority": "high"}, "priority"),
        ({"string": "x", "action": "warn", "case_sensitive": "yes"}, "case_sensitive"),
        ({"string": "", "match_type": "contains", "action": "warn"}, "string"),
        ({"string": "x", "match_type": "contains"}, "action"),
    ]
    for body, field in cases:
        answer = pg_router.post(RULES, {"enabled_entity_ids": e, **body})
        error = assert_error(answer, 400, field)
        assert error["code"] == "validation_error"
    assert_error(
        pg_router.post(RULES, {"string": "x", "action": "warn"}), 400, "enabled_entity_ids"
    )
    assert_error(
        pg_router.post(RULES, {"string": "x", "action": "warn", "enabled_entity_ids": []}),
        400,
        "enabled_entity_ids",
    )
    after = pg_router.get(RULES, params={"include_inactive": "1", "per_page": 1}).json()["total"]
    assert after == before  # nothing stored


def test_crud_put_partial_update_and_delete_deactivates(pg_router):
    channel = unique("crud")
    rule = warn_rule(pg_router, channel, "lemon", "word", priority=42)
    path = RULES + f"/{rule['id']}"
    got = pg_router.get(RULES + f"/{rule['id']}").json()
    assert got == rule
    assert got["is_active"] is True and got["match_count"] == 0 and got["last_matched"] is None
    assert got["created_by"] == "api"

    answer = put(pg_router, path, {"warning_message": "no citrus"})
    assert answer.status_code == 200, answer.text
    updated = answer.json()
    assert updated["warning_message"] == "no citrus"
    for field in ("string", "match_type", "priority", "action", "enabled_entity_ids"):
        assert updated[field] == rule[field]  # fields not sent keep their values
    pg_router.chat("lemon", channel)
    assert pg_router.replies(entity(channel))[0]["chat_message"] == "no citrus"

    # change the match, keep the rest
    answer = put(pg_router, path, {"string": "lim(e|on)", "match_type": "regex"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["priority"] == 42
    assert matched_rule(pg_router.chat("key lime pie", channel)) == rule["id"]

    # a bad partial update is refused and changes nothing
    bad = put(pg_router, path, {"string": "(("})
    assert_error(bad, 400, "string")
    bad = put(pg_router, path, {"action": "nuke"})
    assert_error(bad, 400, "action")
    assert pg_router.get(RULES + f"/{rule['id']}").json()["string"] == "lim(e|on)"

    # DELETE deactivates (kept for its statistics) and the rule stops matching
    answer = delete(pg_router, path)
    assert answer.status_code == 200, answer.text
    assert answer.json()["is_active"] is False
    assert matched_rule(pg_router.chat("key lime pie", channel)) is None
    kept = pg_router.get(RULES + f"/{rule['id']}").json()
    assert kept["is_active"] is False and kept["match_count"] == 2
    listed = pg_router.get(RULES, params={"entity_id": entity(channel)}).json()
    assert listed["items"] == []
    listed = pg_router.get(
        RULES, params={"entity_id": entity(channel), "include_inactive": "true"}
    ).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]

    missing = delete(pg_router, RULES + "/999999999")
    assert_error(missing, 404, "id")
    assert pg_router.get(RULES).status_code == 200
    assert requests.get(pg_router.url + RULES, timeout=10).status_code == 401


# -- statistics ---------------------------------------------------------------------------
def _prometheus_matches(router, action: str) -> float:
    text = router.get("/api/router/metrics", params={"format": "prometheus"}).text
    found = re.search(
        r'^router_string_matches_total\{action="' + action + r'"\} ([0-9.e+]+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_match_count_last_matched_and_metrics(pg_router):
    channel = unique("stat")
    rule = warn_rule(pg_router, channel, "counted", "contains")
    metrics = pg_router.get("/api/router/metrics").json()
    matches_before = metrics["string_rules"]["matches"]
    prom_before = _prometheus_matches(pg_router, "warn")
    started = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

    for _ in range(3):
        pg_router.chat("this is counted", channel)
    pg_router.chat("this is not", channel)

    got = pg_router.get(RULES + f"/{rule['id']}").json()
    assert got["match_count"] == 3
    last = datetime.datetime.fromisoformat(got["last_matched"])
    assert started - datetime.timedelta(seconds=5) <= last
    assert last <= datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
        seconds=5
    )
    metrics = pg_router.get("/api/router/metrics").json()
    assert metrics["string_rules"]["matches"] >= matches_before + 3
    assert _prometheus_matches(pg_router, "warn") >= prom_before + 3

    pg_router.chat("counted again", channel)
    again = pg_router.get(RULES + f"/{rule['id']}").json()
    assert again["match_count"] == 4
    assert datetime.datetime.fromisoformat(again["last_matched"]) >= last


# -- user-supplied regex cannot stall the router ---------------------------------------------
def test_catastrophic_regex_answers_fast(pg_router):
    channel = unique("redos")
    rule = warn_rule(pg_router, channel, "(a+)+$", "regex")
    other = warn_rule(pg_router, channel, "(x+x+)+y", "regex", priority=200)
    pg_router.chat("warm up", channel)  # builds the entity's matcher
    message = "a" * 3900 + "b"
    started = time.perf_counter()
    answer = pg_router.chat(message, channel)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed
    assert matched_rule(answer) is None  # ends with "b": no match, found in linear time
    started = time.perf_counter()
    answer = pg_router.chat("x" * 3900, channel)
    assert time.perf_counter() - started < 2.0
    assert matched_rule(answer) is None
    answer = pg_router.chat("a" * 3900, channel)
    assert matched_rule(answer) == rule["id"]
    assert other["id"] != rule["id"]


def test_rule_changes_apply_to_the_very_next_message(pg_router):
    """Rules reload from the primary: a replica a few ms behind never hides a change.

    (Reloading from the replica cached the pre-change rules for the whole cache TTL,
    5 minutes by default, about once in 30 tries on the test cluster.)
    """
    for _ in range(20):
        channel = unique("rw")
        pg_router.chat("warm up", channel)  # the entity's matcher is built and cached
        rule = warn_rule(pg_router, channel, "zzz", "contains")
        assert matched_rule(pg_router.chat("zzz", channel)) == rule["id"]
        assert delete(pg_router, f"{RULES}/{rule['id']}").status_code == 200
        assert matched_rule(pg_router.chat("zzz", channel)) is None
