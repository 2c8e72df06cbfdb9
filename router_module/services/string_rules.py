"""String-rule matching engine: validation, a linear-time matcher and a per-entity cache.

A string rule (spec table ``stringmatch``) matches a chat message by ``exact``,
``contains``, ``word`` (whole word), ``regex`` or ``*`` (everything) and carries an
action (``warn``, ``block``, ``command``, ``webhook``) with its payload. The first
matching rule by ``(priority, id)`` wins.

:class:`StringRuleMatcher` costs about O(len(message)) whatever the number of rules:

- ``exact`` rules are hash lookups of the stripped message;
- ``contains`` and ``word`` rules share two Aho-Corasick automata, one over the message
  as written (case-sensitive rules) and one over ``message.casefold()`` (case-insensitive
  rules); a ``word`` hit counts only when the characters either side are not word
  characters (alphanumeric or ``_``);
- all ``regex`` rules are compiled into one RE2 set, which RE2 runs in linear time, so a
  user-supplied pattern such as ``(a+)+$`` cannot stall the router (DESIGN §6).

Case-insensitive comparison is ``str.casefold`` on both sides for literal rules (so
``ÄRGER`` matches ``ärger`` and ``STRASSE`` matches ``straße``), and RE2's ``(?i)`` for
regex rules. :func:`naive_match` is the same semantics as a plain loop, kept as the test
oracle and the benchmark baseline.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import ahocorasick
import re2

from waddlebot.netguard import check_url
from waddlebot.web import ValidationError

log = logging.getLogger("waddlebot.router.string_rules")

MATCH_TYPES = ("exact", "contains", "word", "regex", "*")
ACTIONS = ("warn", "block", "command", "webhook")
COMMAND_PREFIXES = ("!", "#")
COMMAND_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
WILDCARD = "*"

MAX_STRING = 1000
MAX_MESSAGE_TEXT = 500
MAX_URL = 1024
MAX_ENTITY_ID = 255
MAX_ENTITY_IDS = 1000
MAX_PARAMETERS = 32
MAX_PARAMETER = 500
DEFAULT_PRIORITY = 100
PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1

# Column names of the ``stringmatch`` table that a client may write.
COLUMNS = (
    "string",
    "match_type",
    "case_sensitive",
    "enabled_entity_ids",
    "action",
    "command_to_execute",
    "command_parameters",
    "webhook_url",
    "warning_message",
    "block_message",
    "priority",
    "is_active",
)

_SET_MAX_MEM = 32 << 20
_NO_MATCH = float("inf")


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One string rule as the matcher sees it; payload fields are carried through untouched."""

    id: int
    string: str
    match_type: str
    case_sensitive: bool = False
    priority: int = DEFAULT_PRIORITY
    action: str = "warn"
    command_to_execute: str | None = None
    command_parameters: tuple[str, ...] | list[str] = ()
    webhook_url: str | None = None
    warning_message: str | None = None
    block_message: str | None = None
    enabled_entity_ids: tuple[str, ...] = (WILDCARD,)
    is_active: bool = True
    sort_key: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "sort_key", (self.priority, self.id))

    @classmethod
    def from_row(cls, row: Mapping) -> Rule:
        """Build a Rule from a ``stringmatch`` row (a pydal Row or any mapping)."""
        params = row.get("command_parameters")
        return cls(
            id=int(row["id"]),
            string=row.get("string") or "",
            match_type=row.get("match_type") or "contains",
            case_sensitive=bool(row.get("case_sensitive")),
            priority=int(
                row.get("priority") if row.get("priority") is not None else DEFAULT_PRIORITY
            ),
            action=row.get("action") or "warn",
            command_to_execute=row.get("command_to_execute"),
            command_parameters=tuple(_as_list(params)),
            webhook_url=row.get("webhook_url"),
            warning_message=row.get("warning_message"),
            block_message=row.get("block_message"),
            enabled_entity_ids=tuple(_as_list(row.get("enabled_entity_ids"))),
            is_active=row.get("is_active") is not False,
        )

    def applies_to(self, entity_id: str) -> bool:
        """Whether this rule is enabled for ``entity_id`` (listed, or ``*``)."""
        ids = self.enabled_entity_ids
        return WILDCARD in ids or entity_id in ids

    def as_dict(self) -> dict:
        """The rule as JSON-ready column values (what the router reports as matched)."""
        return {
            "id": self.id,
            "string": self.string,
            "match_type": self.match_type,
            "case_sensitive": self.case_sensitive,
            "priority": self.priority,
            "action": self.action,
            "command_to_execute": self.command_to_execute,
            "command_parameters": list(self.command_parameters),
            "webhook_url": self.webhook_url,
            "warning_message": self.warning_message,
            "block_message": self.block_message,
            "enabled_entity_ids": list(self.enabled_entity_ids),
            "is_active": self.is_active,
        }


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = None
            if isinstance(loaded, list):
                return [str(v) for v in loaded]
        # pydal list:string columns may come back as "|a|b|" from raw SQL.
        return [part for part in text.replace("|", ",").split(",") if part.strip()]
    return list(value)


# ---------------------------------------------------------------------- validation


def regex_source(pattern: str, case_sensitive: bool) -> str:
    """The RE2 pattern the matcher compiles for a regex rule."""
    return pattern if case_sensitive else f"(?i){pattern}"


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


def _re2_message(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)


@functools.lru_cache(maxsize=4096)
def _compiled(source: str):
    return re2.compile(source, _re2_options())


def _check_regex(pattern: str, case_sensitive: bool) -> None:
    try:
        _compiled(regex_source(pattern, case_sensitive))
    except re2.error as exc:
        raise ValidationError(f"regex not supported: {_re2_message(exc)}", field="string") from None


def _text(data: dict, name: str, *, max_len: int, allow_none: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if allow_none:
            return None
        raise ValidationError(f"{name} is required", field=name)
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} is longer than {max_len} characters", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{name} is not valid text", field=name) from None
    return value


def _bool(data: dict, name: str) -> bool:
    value = data[name]
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


def _priority(data: dict) -> int:
    value = data["priority"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("priority must be an integer", field="priority")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise ValidationError("priority is out of range", field="priority")
    return value


def _entity_ids(data: dict) -> list[str]:
    value = data["enabled_entity_ids"]
    name = "enabled_entity_ids"
    if not isinstance(value, list) or not value:
        raise ValidationError(
            f'{name} must be a non-empty list of entity ids (or ["*"])', field=name
        )
    if len(value) > MAX_ENTITY_IDS:
        raise ValidationError(f"{name} has more than {MAX_ENTITY_IDS} entries", field=name)
    seen: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(f"{name} must contain non-empty strings", field=name)
        if len(item) > MAX_ENTITY_ID:
            raise ValidationError(
                f"{name} entries are at most {MAX_ENTITY_ID} characters", field=name
            )
        seen[item.strip()] = None
    return [WILDCARD] if WILDCARD in seen else list(seen)


def _command(data: dict) -> str | None:
    value = _text(data, "command_to_execute", max_len=65)
    if value is None:
        return None
    value = value.strip()
    name = value[1:].lower()
    if (
        not value
        or value[0] not in COMMAND_PREFIXES
        or not name
        or len(name) > 64
        or not set(name) <= COMMAND_NAME_CHARS
    ):
        raise ValidationError(
            'command_to_execute must be a prefix (! or #) and a command name, like "!so" '
            'or "#weather"; arguments go in command_parameters',
            field="command_to_execute",
        )
    return value[0] + name


def _parameters(data: dict) -> list[str]:
    value = data["command_parameters"]
    name = "command_parameters"
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{name} must be a list of strings", field=name)
    if len(value) > MAX_PARAMETERS:
        raise ValidationError(f"{name} has more than {MAX_PARAMETERS} entries", field=name)
    if any(len(v) > MAX_PARAMETER for v in value):
        raise ValidationError(f"{name} entries are at most {MAX_PARAMETER} characters", field=name)
    return list(value)


def _choice(data: dict, name: str, choices: Sequence[str]) -> str:
    value = data[name]
    if value not in choices:
        raise ValidationError(
            f"{name} must be one of: {', '.join(repr(c) for c in choices)}", field=name
        )
    return value


def validate_rule(
    data: dict,
    *,
    partial: bool = False,
    allow_private: bool = False,
    current: Mapping | None = None,
) -> dict:
    """Validate a create (or, with ``partial``, update) body; return normalized column values.

    Raises :class:`waddlebot.web.ValidationError` naming the offending field. On create,
    ``string`` (except for ``*``), ``action`` and ``enabled_entity_ids`` are required and
    the other columns get their defaults. With ``partial`` only the given columns are
    returned; cross-field checks (regex compiles, ``command`` has a command, ``webhook``
    has a URL) use ``current`` (the stored row) for the columns not given.
    ``allow_private`` is passed to :func:`waddlebot.netguard.check_url`.
    """
    if not isinstance(data, dict):
        raise ValidationError("body must be a JSON object")
    given = {k: data[k] for k in COLUMNS if k in data}
    if partial and not given:
        raise ValidationError(f"nothing to update: give one of {', '.join(COLUMNS)}")
    out: dict = {}

    if "match_type" in given:
        out["match_type"] = _choice(given, "match_type", MATCH_TYPES)
    if "action" in given:
        out["action"] = _choice(given, "action", ACTIONS)
    if "string" in given:
        out["string"] = _text(given, "string", max_len=MAX_STRING, allow_none=False)
    for name in ("case_sensitive", "is_active"):
        if name in given:
            out[name] = _bool(given, name)
    if "priority" in given:
        out["priority"] = _priority(given)
    if "enabled_entity_ids" in given:
        out["enabled_entity_ids"] = _entity_ids(given)
    if "command_to_execute" in given:
        out["command_to_execute"] = _command(given)
    if "command_parameters" in given:
        out["command_parameters"] = _parameters(given)
    if "webhook_url" in given:
        url = _text(given, "webhook_url", max_len=MAX_URL)
        if url is not None:
            url = url.strip()
            check_url(url, allow_private=allow_private, field="webhook_url")
        out["webhook_url"] = url or None
    for name in ("warning_message", "block_message"):
        if name in given:
            out[name] = _text(given, name, max_len=MAX_MESSAGE_TEXT)

    if not partial:
        if "match_type" not in out:
            out["match_type"] = WILDCARD if out.get("string") == WILDCARD else "contains"
        if "action" not in out:
            raise ValidationError("action is required", field="action")
        if "enabled_entity_ids" not in out:
            raise ValidationError(
                'enabled_entity_ids is required (a list of entity ids, or ["*"])',
                field="enabled_entity_ids",
            )
        out.setdefault("case_sensitive", False)
        out.setdefault("priority", DEFAULT_PRIORITY)
        out.setdefault("is_active", True)
        out.setdefault("command_parameters", [])
        for name in ("command_to_execute", "webhook_url", "warning_message", "block_message"):
            out.setdefault(name, None)

    _check_combination(out, current if partial else None, partial)
    return out


def _check_combination(out: dict, current: Mapping | None, partial: bool) -> None:
    """Cross-field checks on the given columns merged over the stored ones (``current``)."""
    merged = {**dict(current or {}), **out} if partial else out

    if not partial or any(k in out for k in ("string", "match_type", "case_sensitive")):
        match_type = merged.get("match_type")
        string = merged.get("string")
        if match_type == WILDCARD:
            if "string" in out and out["string"] not in ("", WILDCARD):
                raise ValidationError(
                    'string must be "*" (or omitted) when match_type is "*"', field="string"
                )
            out["string"] = WILDCARD
        elif match_type is not None and ("string" in merged or not partial):
            if not isinstance(string, str) or not string.strip():
                raise ValidationError(
                    f"string is required and must not be empty for match_type {match_type!r}",
                    field="string",
                )
            if match_type in ("exact", "word") and "string" in out:
                out["string"] = string.strip()
            if match_type == "regex":
                _check_regex(string, bool(merged.get("case_sensitive")))
        elif "string" in out and not out["string"].strip():
            raise ValidationError("string must not be empty", field="string")

    if not partial or any(k in out for k in ("action", "command_to_execute", "webhook_url")):
        action = merged.get("action")
        for needed_by, column, example in (
            ("command", "command_to_execute", ' (like "!so")'),
            ("webhook", "webhook_url", ""),
        ):
            if action == needed_by and (column in merged or not partial):
                if not merged.get(column):
                    raise ValidationError(
                        f'{column} is required for action "{needed_by}"{example}', field=column
                    )


# ------------------------------------------------------------------------ matching


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _word_bounded(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` has no word character directly before or after it."""
    if start > 0 and _is_word_char(text[start - 1]):
        return False
    return not (end < len(text) and _is_word_char(text[end]))


def _fold(text: str) -> str:
    return text.casefold()


def _exact_key(text: str, case_sensitive: bool) -> str:
    return text.strip() if case_sensitive else text.casefold().strip()


def _encode(text: str) -> bytes:
    # Lone surrogates (possible from JSON "\ud800") cannot be UTF-8: replace them.
    return text.encode("utf-8", "replace")


def _literal(rule: Rule) -> str:
    """The literal a rule searches for (already folded when case-insensitive); '' = none."""
    text = rule.string or ""
    if rule.match_type in ("exact", "word"):
        text = text.strip()
    if not text:
        return ""
    if rule.match_type == "exact":
        return _exact_key(text, rule.case_sensitive)
    return text if rule.case_sensitive else _fold(text)


def _sorted_active(rules: Iterable[Rule]) -> list[Rule]:
    return sorted((r for r in rules if r.is_active), key=lambda r: r.sort_key)


def naive_match(rules: Iterable[Rule], message: str) -> Rule | None:
    """The first matching rule by (priority, id), checking rules one by one (the oracle)."""
    if message is None:
        message = ""
    folded = None
    encoded = None
    for rule in _sorted_active(rules):
        kind = rule.match_type
        if kind == WILDCARD:
            return rule
        if kind == "regex":
            try:
                regex = _compiled(regex_source(rule.string, rule.case_sensitive))
            except re2.error:
                continue
            if encoded is None:
                encoded = _encode(message)
            if regex.search(encoded):
                return rule
            continue
        needle = _literal(rule)
        if not needle:
            continue
        if rule.case_sensitive:
            text = message
        else:
            if folded is None:
                folded = _fold(message)
            text = folded
        if kind == "exact":
            if _exact_key(message, rule.case_sensitive) == needle:
                return rule
        elif kind == "contains":
            if needle in text:
                return rule
        elif kind == "word":
            start = text.find(needle)
            while start != -1:
                if _word_bounded(text, start, start + len(needle)):
                    return rule
                start = text.find(needle, start + 1)
    return None


class _Literals:
    """One Aho-Corasick automaton: literal -> (best contains rank, best word rank, length)."""

    __slots__ = ("automaton", "best")

    def __init__(self, entries: dict[str, list]):
        self.automaton = None
        self.best = _NO_MATCH
        if not entries:
            return
        automaton = ahocorasick.Automaton()
        for literal, (contains_rank, word_rank) in entries.items():
            automaton.add_word(literal, (contains_rank, word_rank, len(literal)))
            self.best = min(self.best, contains_rank, word_rank)
        automaton.make_automaton()
        self.automaton = automaton

    def search(self, text: str, best: float) -> float:
        """The best rank among hits in ``text`` that beats ``best`` (else ``best``)."""
        floor = self.best
        for end, (contains_rank, word_rank, length) in self.automaton.iter(text):
            if contains_rank < best:
                best = contains_rank
            if word_rank < best and _word_bounded(text, end + 1 - length, end + 1):
                best = word_rank
            if best <= floor:
                break
        return best


class StringRuleMatcher:
    """All of an entity's rules compiled for O(len(message)) matching."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules: list[Rule] = _sorted_active(rules)
        self._wildcard = _NO_MATCH
        self._exact: dict[bool, dict[str, int]] = {True: {}, False: {}}
        literals: dict[bool, dict[str, list]] = {True: {}, False: {}}
        regex_sources: list[str] = []
        regex_ranks: list[int] = []
        self.skipped: list[int] = []

        for rank, rule in enumerate(self.rules):
            kind = rule.match_type
            if kind == WILDCARD:
                self._wildcard = min(self._wildcard, rank)
            elif kind == "regex":
                source = regex_source(rule.string, rule.case_sensitive)
                try:
                    _compiled(source)
                except re2.error as exc:
                    log.warning("string rule %s skipped: %s", rule.id, _re2_message(exc))
                    self.skipped.append(rule.id)
                    continue
                regex_sources.append(source)
                regex_ranks.append(rank)
            elif kind in ("exact", "contains", "word"):
                literal = _literal(rule)
                if not literal:
                    self.skipped.append(rule.id)
                    continue
                if kind == "exact":
                    self._exact[rule.case_sensitive].setdefault(literal, rank)
                else:
                    slot = literals[rule.case_sensitive].setdefault(literal, [_NO_MATCH, _NO_MATCH])
                    index = 0 if kind == "contains" else 1
                    slot[index] = min(slot[index], rank)
            else:
                self.skipped.append(rule.id)

        self._sensitive = _Literals(literals[True])
        self._insensitive = _Literals(literals[False])
        self._regex_ranks = regex_ranks
        self._regex_best = regex_ranks[0] if regex_ranks else _NO_MATCH
        self._regex_set = self._build_set(regex_sources)
        self._regex_fallback: list | None = None
        if regex_sources and self._regex_set is None:
            # The set would not compile within its memory budget: match one by one.
            self._regex_fallback = [_compiled(s) for s in regex_sources]

    @staticmethod
    def _build_set(sources: list[str]):
        if not sources:
            return None
        options = _re2_options()
        options.max_mem = _SET_MAX_MEM
        regex_set = re2.Set.SearchSet(options)
        try:
            for source in sources:
                regex_set.Add(source)
            regex_set.Compile()
        except re2.error as exc:
            log.warning("regex set of %d rules did not compile: %s", len(sources), exc)
            return None
        return regex_set

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, message: str) -> Rule | None:
        """The first rule by (priority, id) that matches ``message``, or None."""
        best = self._wildcard
        if best == 0:
            return self.rules[0]
        if message is None:
            message = ""
        exact = self._exact
        if exact[True]:
            best = min(best, exact[True].get(message.strip(), _NO_MATCH))
        folded = None
        if exact[False] or self._insensitive.automaton is not None:
            folded = message.casefold()
            if exact[False]:
                best = min(best, exact[False].get(folded.strip(), _NO_MATCH))
        literals = self._sensitive
        if literals.automaton is not None and literals.best < best:
            best = literals.search(message, best)
        literals = self._insensitive
        if literals.automaton is not None and literals.best < best:
            best = literals.search(folded, best)
        if self._regex_best < best:
            best = min(best, self._regex_rank(message))
        return None if best == _NO_MATCH else self.rules[best]

    def _regex_rank(self, message: str) -> float:
        encoded = _encode(message)
        ranks = self._regex_ranks
        if self._regex_set is not None:
            hits = self._regex_set.Match(encoded)
            return min(ranks[i] for i in hits) if hits else _NO_MATCH
        for i, regex in enumerate(self._regex_fallback or ()):
            if regex.search(encoded):
                return ranks[i]
        return _NO_MATCH


# --------------------------------------------------------------------------- cache


class MatcherCache:
    """Per-entity :class:`StringRuleMatcher` cache, built lazily from ``loader(entity_id)``.

    Entries expire after ``ttl`` seconds; :meth:`invalidate` drops them (all, or one
    entity) so the next message rebuilds from the loader. Thread-safe: concurrent misses
    for one entity build once, and a build that overlaps an invalidation is not kept.
    When the loader fails and an expired matcher exists, that matcher keeps serving.
    """

    def __init__(
        self,
        loader: Callable[[str], Iterable[Rule]],
        ttl: float = 60.0,
        *,
        max_entities: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loader = loader
        self.ttl = ttl
        self.max_entities = max_entities
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StringRuleMatcher]] = OrderedDict()
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self.builds = 0

    def _fresh(self, entity_id: str) -> StringRuleMatcher | None:
        entry = self._entries.get(entity_id)
        if entry is not None and entry[0] > self._clock():
            self._entries.move_to_end(entity_id)
            return entry[1]
        return None

    def get(self, entity_id: str) -> StringRuleMatcher:
        """The entity's matcher, building it from the loader when missing or expired."""
        with self._lock:
            matcher = self._fresh(entity_id)
            if matcher is not None:
                return matcher
            build_lock = self._building.setdefault(entity_id, threading.Lock())
        with build_lock:
            with self._lock:
                matcher = self._fresh(entity_id)
                if matcher is not None:
                    return matcher
                generation = self._generation
                stale = self._entries.get(entity_id)
            try:
                rules = self._loader(entity_id)
                matcher = StringRuleMatcher(r for r in rules if r.applies_to(entity_id))
            except Exception:
                if stale is None:
                    raise
                log.exception("string rules for %s not reloaded; serving the old set", entity_id)
                matcher = stale[1]
            with self._lock:
                self.builds += 1
                if self._generation == generation:
                    self._entries[entity_id] = (self._clock() + self.ttl, matcher)
                    self._entries.move_to_end(entity_id)
                    while len(self._entries) > self.max_entities:
                        self._entries.popitem(last=False)
                if self._building.get(entity_id) is build_lock:
                    del self._building[entity_id]
            return matcher

    def match(self, entity_id: str, message: str) -> Rule | None:
        """The first matching rule for ``message`` in ``entity_id``, or None."""
        return self.get(entity_id).match(message)

    def invalidate(self, entity_id: str | None = None) -> None:
        """Drop every cached matcher (or only ``entity_id``'s)."""
        with self._lock:
            self._generation += 1
            if entity_id is None:
                self._entries.clear()
            else:
                self._entries.pop(entity_id, None)
