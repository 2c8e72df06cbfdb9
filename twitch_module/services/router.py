"""Calls from the collector to the router (events, registry, coordination, activation).

Every call is JSON with the service key. Failures are sorted into the two cases the
callers act on: :class:`RouterRejected` (the router answered that the request itself is
wrong - retrying the same request cannot help) and :class:`RouterUnavailable` (down,
timed out, overloaded, or misconfigured credentials - try again later).
"""

from __future__ import annotations

from typing import Any

import requests

from waddlebot.http import session

#: answers that mean "this request will never be accepted as it is"
PERMANENT_STATUSES = frozenset({400, 404, 405, 409, 410, 413, 415, 422})


class RouterError(Exception):
    """A router call failed; ``status`` is the HTTP status when the router answered."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class RouterUnavailable(RouterError):
    """The router did not accept the request now; the same request may succeed later."""


class RouterRejected(RouterError):
    """The router refused the request itself (validation, unknown path)."""


class RouterClient:
    """JSON calls to ``ROUTER_API_URL`` with ``X-API-Key``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        http: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self._http = http or session(pool_size=16, retries=0)

    def post(self, path: str, body: dict, *, timeout: float | None = None) -> Any:
        """POST ``body`` to ``path``; the decoded answer, or RouterRejected/RouterUnavailable."""
        url = f"{self.base_url}{path}"
        try:
            answer = self._http.post(
                url,
                json=body,
                headers={"X-API-Key": self._api_key},
                timeout=timeout or self.timeout,
            )
        except requests.Timeout:
            raise RouterUnavailable(f"POST {path} timed out") from None
        except requests.RequestException as exc:
            raise RouterUnavailable(f"POST {path} failed: {type(exc).__name__}") from None
        try:
            data = answer.json() if answer.content else None
        except ValueError:
            data = answer.text[:500]
        if answer.ok:
            return data
        message = f"POST {path} answered {answer.status_code}"
        detail = _error_message(data)
        if detail:
            message = f"{message}: {detail}"
        kind = RouterRejected if answer.status_code in PERMANENT_STATUSES else RouterUnavailable
        raise kind(message, status=answer.status_code, body=data)

    # -- events -----------------------------------------------------------------------
    def send_event(self, event: dict) -> dict:
        """``POST /api/router/events``: the router's answer (processed, duplicate ...)."""
        return self.post("/api/router/events", event) or {}

    def send_events(self, events: list[dict]) -> dict:
        """``POST /api/router/events/batch`` (≤ 100): ``{"results": [...]}`` in input order."""
        return self.post("/api/router/events/batch", {"events": events}) or {}

    # -- registry and activation --------------------------------------------------------
    def register(self, registration: dict) -> dict:
        """``POST /api/modules/register`` (idempotent)."""
        return self.post("/api/modules/register", registration) or {}

    def heartbeat(self, module_name: str, status: str = "active") -> dict:
        """``POST /api/modules/heartbeat``."""
        return self.post("/api/modules/heartbeat", {"module_name": module_name, "status": status})

    def activate(self, *, platform: str, channel_id: str, owner_user_id: str, config: dict) -> dict:
        """``POST /api/gateway/activate`` for a Twitch channel (server id = channel id)."""
        return self.post(
            "/api/gateway/activate",
            {
                "platform": platform,
                "server_id": channel_id,
                "channel_id": channel_id,
                "owner_user_id": owner_user_id,
                "config": config,
            },
        )

    # -- coordination -----------------------------------------------------------------
    def coordination(self, action: str, body: dict) -> dict:
        """``POST /api/router/coordination/<action>``."""
        return self.post(f"/api/router/coordination/{action}", body) or {}


def _error_message(data: Any) -> str | None:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or "") or None
        if isinstance(error, str):
            return error
    return None
