"""String-rule moderation: the processor's fallback for chat that is not a command.

Rules apply per entity; each entity's rules are compiled once into a
:class:`StringRuleMatcher` (cost ~ message length, not rule count) and rebuilt when any
router process changes a rule (a shared version key, checked at most once a second).
The first matching rule by priority decides: warn, block, run a command, or call a
webhook.
"""

from __future__ import annotations

import logging

import requests

from waddlebot.contracts import ModuleResponse
from waddlebot.db import Database, utcnow
from waddlebot.http import session
from waddlebot.netguard import check_url
from waddlebot.store import Store
from waddlebot.web import ValidationError

from .cache import SharedVersion
from .string_rules import MatcherCache, Rule

log = logging.getLogger("waddlebot.router.moderation")
VERSION_KEY = "router:rules:version"


def _to_rule(row) -> Rule:
    return Rule(
        id=row.id,
        string=row.string,
        match_type=row.match_type,
        case_sensitive=bool(row.case_sensitive),
        priority=row.priority or 0,
        action=row.action,
        command_to_execute=row.command_to_execute,
        command_parameters=tuple(row.command_parameters or ()),
        webhook_url=row.webhook_url,
        warning_message=row.warning_message,
        block_message=row.block_message,
    )


class Moderation:
    """Callable seam plugged into the EventProcessor (``processor.string_rules``)."""

    version_check_interval = 1.0

    def __init__(
        self,
        database: Database,
        store: Store,
        *,
        allow_private: bool,
        ttl: float = 300.0,
        executor=None,
    ):
        self.database = database
        self.store = store
        self.allow_private = allow_private
        self.cache = MatcherCache(self._load, ttl=ttl)
        self.version = SharedVersion(store, VERSION_KEY, interval=self.version_check_interval)
        self._executor = executor
        self._http = session(pool_size=10, retries=0)
        self.matches = 0
        self.webhook_failures = 0

    def _load(self, entity_id: str) -> list[Rule]:
        # From the primary, not the replica: a reload usually follows a rule change
        # (invalidate), and rules read from a replica that has not replayed it yet would
        # be cached for the whole TTL (a new rule not enforced, a deleted one still firing).
        with self.database.connection() as d:
            rows = d(d.stringmatch.is_active == True).select(
                orderby=d.stringmatch.priority | d.stringmatch.id
            )
        return [
            _to_rule(r)
            for r in rows
            if entity_id in (r.enabled_entity_ids or []) or "*" in (r.enabled_entity_ids or [])
        ]

    def invalidate(self) -> None:
        """Forget compiled rules here and tell the other router processes."""
        self.cache.invalidate()
        self.version.bump()

    def _check_version(self) -> None:
        if self.version.moved():
            self.cache.invalidate()

    def __call__(self, turn, processor) -> dict | None:
        """Match the chat line; act on the first rule; None when nothing matched."""
        self._check_version()
        text = turn.event.message_content or ""
        rule = self.cache.get(turn.entity.entity_id).match(text)
        if rule is None:
            return None
        self.matches += 1
        processor.metrics.string_matches.labels(rule.action).inc()
        db = self.database.primary
        db(db.stringmatch.id == rule.id).update(
            match_count=db.stringmatch.match_count + 1, last_matched=utcnow()
        )
        executions: list[dict] = []
        if rule.action == "warn":
            processor.reply(
                turn,
                rule.warning_message or f"@{turn.event.user_name}, please mind the chat rules.",
                None,
                "router",
            )
        elif rule.action == "block":
            message_id = turn.event.metadata.get("message_id") or turn.event.event_id
            response = ModuleResponse(
                response_action="chat",
                module_name="router",
                chat_message=rule.block_message or None,
            )
            processor.delivery.dispatch(
                db,
                response,
                context=processor.context(turn, None),
                moderation={"action": "delete", "message_id": message_id},
            )
        elif rule.action == "command":
            command = rule.command_to_execute or ""
            args = list(rule.command_parameters)
            parsed = (command[:1], command[1:].lower(), args, " ".join(args))
            executions = processor.run_command(turn, parsed, {})
        elif rule.action == "webhook":
            payload = {
                "rule_id": rule.id,
                "message_content": text,
                "event": turn.event.to_dict(),
                "entity_id": turn.entity.entity_id,
                "community_id": turn.entity.community_id,
                "session_id": turn.session_id,
            }
            submit = self._executor.submit if self._executor else (lambda f, *a: f(*a))
            submit(self._post_webhook, rule.webhook_url, payload)
        return {
            "rule": {"id": rule.id, "action": rule.action, "match_type": rule.match_type},
            "executions": executions,
        }

    def _post_webhook(self, url: str, payload: dict) -> None:
        try:
            check_url(url, allow_private=self.allow_private, resolve=True, field="webhook_url")
            answer = self._http.post(url, json=payload, timeout=5, allow_redirects=False)
            if answer.status_code >= 300:
                self.webhook_failures += 1
                log.warning("string-rule webhook %s answered %s", url, answer.status_code)
        except (ValidationError, requests.RequestException) as exc:
            self.webhook_failures += 1
            log.warning("string-rule webhook %s failed: %s", url, exc)
