"""The alias module's calls to the router: the command catalogue, events, registration."""

from __future__ import annotations

import dataclasses

from waddlebot.http import request_json

#: the router's largest page of ``GET /api/router/commands``
PAGE_SIZE = 500


@dataclasses.dataclass(frozen=True, slots=True)
class RouterCommand:
    """One active command as ``GET /api/router/commands`` lists it."""

    prefix: str
    command: str
    module_name: str
    trigger_type: str

    @property
    def label(self) -> str:
        """``!so`` style name."""
        return f"{self.prefix}{self.command}"

    @property
    def typed(self) -> bool:
        """Whether chat can run it (event-only triggers cannot)."""
        return self.trigger_type in ("command", "both")


class RouterClient:
    """Service-key calls to ``ROUTER_API_URL``; failures raise ``waddlebot.http.HttpError``."""

    def __init__(
        self, *, base_url: str, api_key: str, timeout: float = 10.0, event_timeout: float = 30.0
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.event_timeout = event_timeout

    @property
    def _headers(self) -> dict:
        return {"X-API-Key": self.api_key}

    def commands(self) -> list[RouterCommand]:
        """Every active command of every module (all pages)."""
        found: list[RouterCommand] = []
        page = 1
        while True:
            answer = request_json(
                "GET",
                f"{self.base_url}/api/router/commands",
                params={"active": "true", "page": page, "per_page": PAGE_SIZE},
                headers=self._headers,
                timeout=self.timeout,
            )
            items = answer.get("items") or []
            found += [
                RouterCommand(
                    prefix=item.get("prefix") or "!",
                    command=item.get("command") or "",
                    module_name=item.get("module_name") or "",
                    trigger_type=item.get("trigger_type") or "command",
                )
                for item in items
            ]
            if not items or page * PAGE_SIZE >= int(answer.get("total") or 0):
                return found
            page += 1

    def send_event(self, event: dict) -> dict:
        """``POST /api/router/events``; returns the router's report of what it did."""
        return request_json(
            "POST",
            f"{self.base_url}/api/router/events",
            json=event,
            headers=self._headers,
            timeout=self.event_timeout,
        )

    def register(self, payload: dict) -> dict:
        """``POST /api/modules/register`` (idempotent on the module name)."""
        return request_json(
            "POST",
            f"{self.base_url}/api/modules/register",
            json=payload,
            headers=self._headers,
            timeout=self.timeout,
        )
