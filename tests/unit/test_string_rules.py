"""String-rule engine: match types, priorities, Unicode, RE2 safety, validation, cache.

The module is loaded from its file so that importing it does not start the router app
(``router_module/__init__.py`` registers the py4web actions and reads the settings).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from waddlebot.web import ValidationError

_PATH = Path(__file__).resolve().parents[2] / "router_module" / "services" / "string_rules.py"


def _load():
    name = "router_string_rules_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sr = _load()
Rule = sr.Rule


def rule(rule_id, string, match_type="contains", **kw):
    return Rule(id=rule_id, string=string, match_type=match_type, **kw)


def first(rules, message):
    """Matcher answer, checked against the naive oracle."""
    found = sr.StringRuleMatcher(rules).match(message)
    assert found == sr.naive_match(rules, message)
    return found.id if found else None


# ------------------------------------------------------------------ match types


@pytest.mark.parametrize(
    "message, expected",
    [("badword", 1), ("  badword \n", 1), ("badword!", None), ("a badword", None)],
)
def test_exact_is_the_whole_stripped_message(message, expected):
    assert first([rule(1, "badword", "exact")], message) == expected


@pytest.mark.parametrize(
    "message, expected",
    [("badword", 1), ("xxbadwordxx", 1), ("bad word", None), ("", None)],
)
def test_contains_is_a_substring(message, expected):
    assert first([rule(1, "badword", "contains")], message) == expected


@pytest.mark.parametrize(
    "message, expected",
    [
        ("ass", 1),
        ("you ass!", 1),
        ("(ass)", 1),
        ("class", None),
        ("assassin", None),
        ("ass_hat", None),
        ("ass2", None),
        ("class ass", 1),
        ("classy assess", None),
    ],
)
def test_word_needs_non_word_characters_around_it(message, expected):
    assert first([rule(1, "ass", "word")], message) == expected


def test_word_checks_every_overlapping_occurrence():
    assert first([rule(1, "aa", "word")], "aaa aa") == 1
    assert first([rule(1, "aa", "word")], "aaa aaa") is None


def test_word_with_punctuation_inside():
    assert first([rule(1, "f*ck", "word")], "oh f*ck.") == 1
    assert first([rule(1, "f*ck", "word")], "of*cks") is None


def test_regex_searches_anywhere():
    rules = [rule(1, r"\bfree\s+v-?bucks\b", "regex")]
    assert first(rules, "get FREE vbucks now") == 1
    assert first(rules, "get free  v-bucks") == 1
    assert first(rules, "freevbucks") is None


def test_regex_anchors_refer_to_the_whole_message():
    rules = [rule(1, r"^hi$", "regex")]
    assert first(rules, "hi") == 1
    assert first(rules, "hi there") is None


def test_wildcard_matches_everything_even_empty():
    rules = [rule(1, "*", "*")]
    assert first(rules, "anything at all") == 1
    assert first(rules, "") == 1


def test_star_string_with_a_literal_type_is_a_literal_asterisk():
    rules = [rule(1, "*", "contains")]
    assert first(rules, "2 * 3") == 1
    assert first(rules, "no star") is None


def test_no_rules_no_match():
    assert sr.StringRuleMatcher([]).match("hello") is None
    assert sr.naive_match([], "hello") is None


# -------------------------------------------------------------- case and Unicode


def test_case_insensitive_by_default_for_every_literal_type():
    for match_type in ("exact", "contains", "word"):
        assert first([rule(1, "Spam", match_type)], "sPAM") == 1


def test_case_sensitive_literals():
    for match_type in ("exact", "contains", "word"):
        rules = [rule(1, "Spam", match_type, case_sensitive=True)]
        assert first(rules, "Spam") == 1
        assert first(rules, "spam") is None


def test_case_insensitive_and_sensitive_regex():
    assert first([rule(1, "sp[a4]m", "regex")], "SP4M") == 1
    assert first([rule(1, "sp[a4]m", "regex", case_sensitive=True)], "SP4M") is None


def test_unicode_case_folding():
    assert first([rule(1, "ÄRGER", "contains")], "so ein ärger") == 1
    assert first([rule(1, "ärger", "word")], "SO EIN ÄRGER!") == 1
    assert first([rule(1, "ÄRGER", "exact")], "ärger") == 1
    assert first([rule(1, "ÄRGER", "contains", case_sensitive=True)], "ärger") is None
    assert first([rule(1, "straße", "contains")], "STRASSE") == 1
    assert first([rule(1, "Ärger", "regex")], "ÄRGER") == 1


def test_unicode_letters_are_word_characters():
    assert first([rule(1, "rger", "word")], "ärger") is None
    assert first([rule(1, "ärger", "word")], "Ärger—schon wieder") == 1
    assert first([rule(1, "кот", "word")], "котик") is None
    assert first([rule(1, "кот", "word")], "мой КОТ.") == 1


def test_emoji_and_lone_surrogates_do_not_break_matching():
    rules = [rule(1, "🔥", "contains"), rule(2, "x.y", "regex")]
    assert first(rules, "hot 🔥 take") == 1
    assert first(rules, "\ud800 xzy") == 2


# -------------------------------------------------------------------- priorities


def test_lowest_priority_wins_across_types():
    rules = [
        rule(1, "*", "*", priority=50),
        rule(2, "spam", "contains", priority=10),
        rule(3, "sp.m", "regex", priority=5),
        rule(4, "spam", "word", priority=20),
        rule(5, "spam", "exact", priority=1),
    ]
    assert first(rules, "spam") == 5
    assert first(rules, "spam spam") == 3
    assert first(rules, "eggs") == 1


def test_equal_priority_breaks_ties_by_id():
    rules = [rule(9, "spam", "contains"), rule(3, "spa", "contains"), rule(5, "s.am", "regex")]
    assert first(rules, "spam") == 3
    rules = [rule(9, "spam", "word"), rule(4, "spam", "contains", case_sensitive=True)]
    assert first(rules, "spam") == 4


def test_a_later_rule_matches_when_the_better_one_does_not():
    rules = [rule(1, "ass", "word", priority=1), rule(2, "class", "contains", priority=2)]
    assert first(rules, "first class") == 2


def test_inactive_rules_never_match():
    assert first([rule(1, "spam", is_active=False)], "spam") is None


def test_rule_payload_is_carried_through():
    r = rule(
        7,
        "weather",
        "word",
        action="command",
        command_to_execute="#weather",
        command_parameters=("paris",),
    )
    found = sr.StringRuleMatcher([r]).match("weather?")
    assert found is r
    assert found.as_dict()["command_parameters"] == ["paris"]


def test_rule_from_row():
    row = {
        "id": 3,
        "string": "spam",
        "match_type": "word",
        "case_sensitive": True,
        "enabled_entity_ids": ["twitch:1:1"],
        "action": "block",
        "command_parameters": None,
        "priority": 2,
        "block_message": "no",
        "is_active": True,
    }
    r = Rule.from_row(row)
    assert (r.id, r.match_type, r.priority, r.block_message) == (3, "word", 2, "no")
    assert r.applies_to("twitch:1:1") and not r.applies_to("twitch:2:2")
    assert Rule.from_row({**row, "enabled_entity_ids": ["*"]}).applies_to("any")
    assert Rule.from_row({**row, "enabled_entity_ids": '["a", "b"]'}).enabled_entity_ids == (
        "a",
        "b",
    )


# --------------------------------------------------------------------- RE2 safety


def test_catastrophic_regex_runs_in_linear_time():
    rules = [rule(1, "(a+)+$", "regex", case_sensitive=True), rule(2, "(x+x+)+y", "regex")]
    matcher = sr.StringRuleMatcher(rules)
    message = "a" * 100_000 + "b"
    started = time.perf_counter()
    assert matcher.match(message) is None
    assert matcher.match("x" * 50_000) is None
    assert time.perf_counter() - started < 0.5
    assert matcher.match("aaaa") is rules[0]


def test_many_regex_rules_share_one_set():
    rules = [rule(i, rf"\bcode{i}-\d+", "regex") for i in range(200)]
    matcher = sr.StringRuleMatcher(rules)
    assert matcher._regex_set is not None
    assert first(rules, "use CODE57-123 today") == 57
    assert first(rules, "use code 57 today") is None


def test_regex_rules_still_match_when_the_set_cannot_compile(monkeypatch):
    monkeypatch.setattr(sr.StringRuleMatcher, "_build_set", staticmethod(lambda sources: None))
    rules = [rule(1, "b+c", "regex", priority=2), rule(2, "^a", "regex", priority=1)]
    assert sr.StringRuleMatcher(rules)._regex_fallback is not None
    assert first(rules, "abbc") == 2
    assert first(rules, "xbbc") == 1
    assert first(rules, "xyz") is None


def test_an_invalid_stored_regex_is_skipped_not_fatal():
    rules = [rule(1, r"(a)\1", "regex", priority=1), rule(2, "aa", "contains")]
    matcher = sr.StringRuleMatcher(rules)
    assert matcher.skipped == [1]
    assert first(rules, "aa") == 2


# --------------------------------------------------------------------- validation


def valid(**kw):
    body = {"string": "spam", "match_type": "word", "action": "warn", "enabled_entity_ids": ["*"]}
    body.update(kw)
    return body


def error_field(body, **kw):
    with pytest.raises(ValidationError) as caught:
        sr.validate_rule(body, **kw)
    assert caught.value.status == 400
    return caught.value.field, caught.value.message


def test_validate_normalizes_and_fills_defaults():
    out = sr.validate_rule(valid(string="  spam ", enabled_entity_ids=["a", "a", "b"]))
    assert out == {
        "string": "spam",
        "match_type": "word",
        "case_sensitive": False,
        "enabled_entity_ids": ["a", "b"],
        "action": "warn",
        "command_to_execute": None,
        "command_parameters": [],
        "webhook_url": None,
        "warning_message": None,
        "block_message": None,
        "priority": 100,
        "is_active": True,
    }
    assert set(out) == set(sr.COLUMNS)


def test_validate_wildcard():
    assert sr.validate_rule(valid(match_type="*", string="*"))["string"] == "*"
    body = valid(match_type="*")
    del body["string"]
    assert sr.validate_rule(body)["string"] == "*"
    body = valid(string="*")
    del body["match_type"]
    assert sr.validate_rule(body)["match_type"] == "*"
    assert error_field(valid(match_type="*", string="spam"))[0] == "string"
    assert sr.validate_rule(valid(enabled_entity_ids=["x", "*"]))["enabled_entity_ids"] == ["*"]


def test_validate_command_action():
    out = sr.validate_rule(
        valid(action="command", command_to_execute="!SO", command_parameters=["{user}"])
    )
    assert (out["command_to_execute"], out["command_parameters"]) == ("!so", ["{user}"])
    assert sr.validate_rule(valid(action="command", command_to_execute="#weather"))[
        "command_to_execute"
    ] == ("#weather")


@pytest.mark.parametrize(
    "body, field",
    [
        (valid(match_type="fuzzy"), "match_type"),
        (valid(action="ban"), "action"),
        (valid(string=""), "string"),
        (valid(string="   "), "string"),
        (valid(string=5), "string"),
        (valid(string="x" * 1001), "string"),
        ({k: v for k, v in valid().items() if k != "string"}, "string"),
        ({k: v for k, v in valid().items() if k != "action"}, "action"),
        ({k: v for k, v in valid().items() if k != "enabled_entity_ids"}, "enabled_entity_ids"),
        (valid(enabled_entity_ids="*"), "enabled_entity_ids"),
        (valid(enabled_entity_ids=[]), "enabled_entity_ids"),
        (valid(enabled_entity_ids=["ok", 3]), "enabled_entity_ids"),
        (valid(enabled_entity_ids=[""]), "enabled_entity_ids"),
        (valid(case_sensitive="yes"), "case_sensitive"),
        (valid(is_active=1), "is_active"),
        (valid(priority="1"), "priority"),
        (valid(priority=True), "priority"),
        (valid(priority=1.5), "priority"),
        (valid(priority=2**40), "priority"),
        (valid(action="command"), "command_to_execute"),
        (valid(action="command", command_to_execute="so"), "command_to_execute"),
        (valid(action="command", command_to_execute="!"), "command_to_execute"),
        (valid(action="command", command_to_execute="!so bob"), "command_to_execute"),
        (valid(action="command", command_to_execute="?so"), "command_to_execute"),
        (valid(action="command", command_to_execute=7), "command_to_execute"),
        (
            valid(action="command", command_to_execute="!so", command_parameters="bob"),
            "command_parameters",
        ),
        (
            valid(action="command", command_to_execute="!so", command_parameters=["a", 1]),
            "command_parameters",
        ),
        (valid(action="webhook"), "webhook_url"),
        (valid(action="webhook", webhook_url="ftp://example.com/x"), "webhook_url"),
        (valid(action="webhook", webhook_url="http://127.0.0.1/hook"), "webhook_url"),
        (valid(action="webhook", webhook_url="http://169.254.169.254/"), "webhook_url"),
        (valid(warning_message="w" * 501), "warning_message"),
        (valid(block_message="b" * 501), "block_message"),
        (valid(block_message=["no"]), "block_message"),
        (valid(string="\ud800"), "string"),
    ],
)
def test_validate_rejects_naming_the_field(body, field):
    assert error_field(body)[0] == field


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!a)b", r"\Z", "[", r"a{2000}"])
def test_validate_rejects_regex_re2_cannot_run(pattern):
    field, message = error_field(valid(match_type="regex", string=pattern))
    assert field == "string"
    assert message.startswith("regex not supported: ")


def test_validate_accepts_re2_regex():
    out = sr.validate_rule(valid(match_type="regex", string=r"(?i)\bfree\s+\p{L}+"))
    assert out["string"] == r"(?i)\bfree\s+\p{L}+"


def test_validate_messages_at_the_limit_and_webhook_urls():
    out = sr.validate_rule(valid(action="block", block_message="b" * 500))
    assert out["block_message"] == "b" * 500
    out = sr.validate_rule(valid(action="webhook", webhook_url="https://hooks.example.com/x"))
    assert out["webhook_url"] == "https://hooks.example.com/x"
    out = sr.validate_rule(
        valid(action="webhook", webhook_url="http://127.0.0.1:9/hook"), allow_private=True
    )
    assert out["webhook_url"] == "http://127.0.0.1:9/hook"


def test_validate_partial_returns_only_given_columns():
    assert sr.validate_rule({"priority": 5}, partial=True) == {"priority": 5}
    assert sr.validate_rule({"string": " x "}, partial=True) == {"string": " x "}
    assert error_field({}, partial=True)[0] is None
    assert error_field({"priority": "high"}, partial=True)[0] == "priority"
    assert error_field({"string": ""}, partial=True)[0] == "string"


def test_validate_partial_checks_against_the_stored_row():
    current = valid(command_to_execute=None, webhook_url=None)
    assert error_field({"action": "command"}, partial=True, current=current)[0] == (
        "command_to_execute"
    )
    assert error_field({"match_type": "regex", "string": "(?=x)"}, partial=True)[0] == "string"
    current_regex = valid(match_type="regex", string="(?=x)")
    assert error_field({"case_sensitive": True}, partial=True, current=current_regex)[0] == (
        "string"
    )
    out = sr.validate_rule({"match_type": "*"}, partial=True, current=current)
    assert out == {"match_type": "*", "string": "*"}
    stored_command = valid(action="command", command_to_execute="!so")
    assert sr.validate_rule({"priority": 1}, partial=True, current=stored_command) == {
        "priority": 1
    }
    assert error_field({"command_to_execute": None}, partial=True, current=stored_command) == (
        "command_to_execute",
        'command_to_execute is required for action "command" (like "!so")',
    )


# -------------------------------------------------------------------------- cache


class Loader:
    def __init__(self, rules):
        self.rules = rules
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, entity_id):
        with self.lock:
            self.calls += 1
        time.sleep(0.01)
        return list(self.rules)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_cache_filters_by_entity_and_builds_once():
    rules = [
        rule(1, "spam", enabled_entity_ids=("twitch:1:1",)),
        rule(2, "eggs", enabled_entity_ids=("*",)),
        rule(3, "ham", enabled_entity_ids=("discord:9:9",)),
    ]
    loader = Loader(rules)
    cache = sr.MatcherCache(loader, ttl=60)
    assert cache.match("twitch:1:1", "spam").id == 1
    assert cache.match("twitch:1:1", "eggs").id == 2
    assert cache.match("twitch:1:1", "ham") is None
    assert cache.match("discord:9:9", "ham").id == 3
    assert cache.match("discord:9:9", "spam") is None
    assert loader.calls == 2


def test_cache_expires_after_ttl_and_invalidates():
    loader = Loader([rule(1, "spam")])
    clock = Clock()
    cache = sr.MatcherCache(loader, ttl=30, clock=clock)
    matcher = cache.get("e")
    assert cache.get("e") is matcher and loader.calls == 1
    clock.now += 31
    assert cache.get("e") is not matcher and loader.calls == 2
    loader.rules = [rule(2, "eggs")]
    assert cache.match("e", "eggs") is None
    cache.invalidate()
    assert cache.match("e", "eggs").id == 2
    cache.invalidate("e")
    cache.get("e")
    assert loader.calls == 4


def test_cache_is_thread_safe_and_coalesces_misses():
    loader = Loader([rule(1, "spam")])
    cache = sr.MatcherCache(loader, ttl=60)
    results, errors = [], []

    def work():
        try:
            for _ in range(50):
                results.append(cache.match("e", "spam spam").id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [1] * 800
    assert loader.calls == 1


def test_cache_build_overlapping_an_invalidation_is_not_kept():
    gate = threading.Event()
    release = threading.Event()
    rules = [rule(1, "old")]

    def loader(entity_id):
        snapshot = list(rules)
        gate.set()
        release.wait(5)
        return snapshot

    cache = sr.MatcherCache(loader, ttl=60)
    worker = threading.Thread(target=cache.get, args=("e",))
    worker.start()
    gate.wait(5)
    rules[:] = [rule(2, "new")]
    cache.invalidate()
    release.set()
    worker.join()
    assert cache.match("e", "new").id == 2


def test_cache_serves_the_old_matcher_when_the_loader_fails():
    clock = Clock()
    state = {"fail": False}

    def loader(entity_id):
        if state["fail"]:
            raise RuntimeError("database down")
        return [rule(1, "spam")]

    cache = sr.MatcherCache(loader, ttl=10, clock=clock)
    assert cache.match("e", "spam").id == 1
    state["fail"] = True
    clock.now += 11
    assert cache.match("e", "spam").id == 1
    with pytest.raises(RuntimeError):
        cache.get("other")


def test_cache_is_bounded():
    cache = sr.MatcherCache(Loader([]), ttl=60, max_entities=3)
    for i in range(5):
        cache.get(f"e{i}")
    assert list(cache._entries) == ["e2", "e3", "e4"]


# ----------------------------------------------------------------- property check

_ALPHABET = "abAB ßsSÄä_-1!.*"
_WORDS = ["ab", "ba", "a", "aB", "ss", "ß", "ä", "Ä", "a_b", "b-a", "1a", "*", "aa", "b"]
_REGEXES = [
    "a+b",
    "^ab",
    "b$",
    "(?:ab|ba)+",
    r"\bab\b",
    "[äÄ]",
    "a.b",
    "s{2}",
    "ß",
    "^$",
    r"\d",
    "(a+)+$",
]


def _random_rules(rng: random.Random) -> list:
    rules = []
    for i in range(rng.randint(0, 12)):
        match_type = rng.choices(
            ["exact", "contains", "word", "regex", "*"], weights=[3, 4, 4, 3, 1]
        )[0]
        if match_type == "regex":
            string = rng.choice(_REGEXES)
        elif match_type == "*":
            string = "*"
        else:
            string = rng.choice(_WORDS + ["".join(rng.choices(_ALPHABET, k=rng.randint(1, 3)))])
        rules.append(
            rule(
                rng.randint(1, 40) if rng.random() < 0.3 else i + 1,
                string,
                match_type,
                case_sensitive=rng.random() < 0.4,
                priority=rng.randint(0, 4),
                is_active=rng.random() < 0.95,
            )
        )
    return rules


def _random_message(rng: random.Random, rules: list) -> str:
    parts = []
    for _ in range(rng.randint(0, 5)):
        if rules and rng.random() < 0.3:
            piece = rng.choice(rules).string
            parts.append(piece.upper() if rng.random() < 0.3 else piece)
        else:
            parts.append("".join(rng.choices(_ALPHABET, k=rng.randint(0, 4))))
    return rng.choice(["", " ", "_"]).join(parts)


def test_matcher_agrees_with_the_naive_loop_on_random_rule_sets():
    rng = random.Random(20240607)
    checked = matched = 0
    for _ in range(300):
        rules = _random_rules(rng)
        matcher = sr.StringRuleMatcher(rules)
        for _ in range(10):
            message = _random_message(rng, rules)
            expected = sr.naive_match(rules, message)
            assert matcher.match(message) == expected, (rules, message)
            checked += 1
            matched += expected is not None
    assert checked == 3000
    assert 0.2 * checked < matched < 0.95 * checked
