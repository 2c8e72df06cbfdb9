"""The portal's client of its neighbours' APIs, all called with the service key.

* the router: string rules (``/api/router/string-rules``) and recent module responses
  (``/api/router/responses/recent``);
* the alias module (``/api/alias/aliases``) and the shoutout module
  (``/api/shoutout/settings/<entity_id>``), which may not be deployed: a 404, a 5xx or
  no answer at all is :class:`ModuleUnavailable`, shown as "module not available".

A 4xx answer naming a field is :class:`RemoteRejected`, so a form can show the
router's own validation message next to the field.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from waddlebot.http import HttpError, request_json

log = logging.getLogger("waddlebot.portal.remote")

WILDCARD = "*"


class ModuleUnavailable(Exception):
    """The module behind an API is not deployed or not answering."""

    def __init__(self, module: str, detail: str):
        super().__init__(f"{module} module not available")
        self.module = module
        self.detail = detail


class RemoteRejected(Exception):
    """The API refused the input; ``field`` names the offending field when it said so."""

    def __init__(self, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def _error_of(body: Any, fallback: str) -> tuple[str, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("message") or fallback), error.get("field")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], None
    return fallback, None


def owned_rule(rule: dict, entity_ids: set[str]) -> bool:
    """Whether a string rule applies only to these entities (so a community may edit it)."""
    enabled = rule.get("enabled_entity_ids") or []
    return bool(enabled) and WILDCARD not in enabled and set(enabled) <= entity_ids


class RemoteApi:
    """Calls to the router, alias and shoutout APIs."""

    def __init__(
        self, *, router_url: str, alias_url: str, shoutout_url: str, api_key: str, timeout: float
    ):
        self.router_url = router_url.rstrip("/")
        self.alias_url = alias_url.rstrip("/")
        self.shoutout_url = shoutout_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _call(self, module: str, method: str, url: str, **kwargs) -> Any:
        try:
            return request_json(
                method, url, headers={"X-API-Key": self.api_key}, timeout=self.timeout, **kwargs
            )
        except HttpError as exc:
            status = exc.status
            if status is None or status >= 500 or status in (401, 403):
                # no answer, a broken module, or a key it does not accept: not usable
                log.info("%s API unavailable: %s", module, exc)
                raise ModuleUnavailable(module, str(exc)) from None
            message, field = _error_of(exc.body, f"{module} answered HTTP {status}")
            if status == 404 and field is None:
                # a plain 404: the route itself is missing, the module is not deployed
                raise ModuleUnavailable(module, str(exc)) from None
            raise RemoteRejected(message, field, status) from None

    # -- string rules (router) ------------------------------------------------------------
    def string_rules(self, entity_ids: set[str]) -> list[dict]:
        """Every rule (active or not) that applies only to these entities, by priority."""
        rules: list[dict] = []
        page = 1
        while True:
            body = self._listing(
                "router",
                f"{self.router_url}/api/router/string-rules",
                params={"include_inactive": "true", "per_page": 500, "page": page},
            )
            items = body.get("items") or []
            rules += [r for r in items if isinstance(r, dict) and owned_rule(r, entity_ids)]
            if page * 500 >= int(body.get("total") or 0) or not items:
                return rules
            page += 1

    def string_rule(self, rule_id: int, entity_ids: set[str]) -> dict | None:
        """One rule, or None when it does not exist or is not this community's."""
        try:
            rule = self._call(
                "router", "GET", f"{self.router_url}/api/router/string-rules/{rule_id}"
            )
        except RemoteRejected as exc:
            if exc.status == 404:
                return None
            raise
        return rule if isinstance(rule, dict) and owned_rule(rule, entity_ids) else None

    def create_string_rule(self, values: dict) -> dict:
        """Create a rule; RemoteRejected names the field the router refused."""
        return self._call(
            "router", "POST", f"{self.router_url}/api/router/string-rules", json=values
        )

    def update_string_rule(self, rule_id: int, values: dict) -> dict:
        """Change a rule."""
        return self._call(
            "router", "PUT", f"{self.router_url}/api/router/string-rules/{rule_id}", json=values
        )

    def deactivate_string_rule(self, rule_id: int) -> dict:
        """Deactivate a rule (the router keeps it for its statistics)."""
        return self._call(
            "router", "DELETE", f"{self.router_url}/api/router/string-rules/{rule_id}"
        )

    # -- module responses (router) --------------------------------------------------------
    def recent_responses(self, entity_id: str, *, per_page: int = 50) -> list[dict]:
        """The entity's latest module responses, newest first."""
        body = self._listing(
            "router",
            f"{self.router_url}/api/router/responses/recent",
            params={"entity_id": entity_id, "per_page": per_page},
        )
        return [r for r in body.get("items") or [] if isinstance(r, dict)]

    # -- aliases (alias module) -----------------------------------------------------------
    def aliases(self, community_id: int) -> list[dict]:
        """The community's command aliases (``{"id", "name", "command", "usage_count"…}``)."""
        found: list[dict] = []
        page = 1
        while True:
            body = self._listing(
                "alias",
                f"{self.alias_url}/api/alias/aliases",
                params={"community_id": community_id, "per_page": 500, "page": page},
            )
            items = [a for a in body.get("items") or [] if isinstance(a, dict)]
            found += items
            if page * 500 >= int(body.get("total") or 0) or not items:
                return found
            page += 1

    def add_alias(self, community_id: int, name: str, command: str, created_by: str) -> dict:
        """Create (or replace) an alias; RemoteRejected names the field the module refused."""
        return self._call(
            "alias",
            "POST",
            f"{self.alias_url}/api/alias/aliases",
            json={
                "community_id": community_id,
                "name": name,
                "command": command,
                "created_by": created_by,
            },
        )

    def delete_alias(self, alias_id: int) -> Any:
        """Remove an alias by id (the caller checked it is the community's)."""
        return self._call("alias", "DELETE", f"{self.alias_url}/api/alias/aliases/{int(alias_id)}")

    # -- shoutout settings (shoutout module) ----------------------------------------------
    def shoutout_settings(self, entity_id: str) -> dict:
        """The channel's automatic-shoutout settings (``auto_shoutout``, ``events``)."""
        return self._listing(
            "shoutout", f"{self.shoutout_url}/api/shoutout/settings/{quote(entity_id, safe='')}"
        )

    def save_shoutout_settings(self, entity_id: str, values: dict) -> Any:
        """Store the channel's automatic-shoutout settings."""
        return self._call(
            "shoutout",
            "PUT",
            f"{self.shoutout_url}/api/shoutout/settings/{quote(entity_id, safe='')}",
            json=values,
        )

    def _listing(self, module: str, url: str, **kwargs) -> dict:
        """A GET whose 404 means the module (not a record) is missing."""
        try:
            body = self._call(module, "GET", url, **kwargs)
        except RemoteRejected as exc:
            if exc.status == 404:
                raise ModuleUnavailable(module, exc.message) from None
            raise
        if isinstance(body, list):
            return {"items": body}
        if not isinstance(body, dict):
            raise ModuleUnavailable(module, "answered something that is not JSON")
        return body
