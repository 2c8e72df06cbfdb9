"""What every interaction module and collector does with the router.

* :class:`ModuleRegistration` registers the module (``POST /api/modules/register``) from
  a background thread, retrying until the router answers — in ``waddlebot up`` every app
  loads before the server listens, so registration at import would always fail — then
  sends heartbeats.
* :class:`CommandCall` is the router's call to a module (DESIGN §8), validated.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from .http import HttpError, request_json
from .web import ValidationError

log = logging.getLogger("waddlebot.modules")


class ModuleRegistration:
    """Register with the router in the background, then heartbeat."""

    def __init__(
        self,
        *,
        router_url: str,
        api_key: str,
        payload: dict,
        heartbeat_interval: float = 300.0,
        max_backoff: float = 10.0,
    ):
        self.router_url = router_url.rstrip("/")
        self.api_key = api_key
        self.payload = payload
        self.heartbeat_interval = heartbeat_interval
        self.max_backoff = max_backoff
        self.registered = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def _headers(self) -> dict:
        return {"X-API-Key": self.api_key}

    def register_once(self) -> bool:
        """One registration attempt; True when the router accepted it."""
        try:
            request_json(
                "POST",
                f"{self.router_url}/api/modules/register",
                json=self.payload,
                headers=self._headers,
                timeout=5,
            )
        except HttpError as exc:
            self.last_error = str(exc)
            if exc.status is not None and 400 <= exc.status < 500:
                log.error(
                    "router refused registration of %s: %s", self.payload["module_name"], exc.body
                )
            return False
        self.registered.set()
        self.last_error = None
        return True

    def heartbeat_once(self) -> bool:
        """One heartbeat; a 404 (router forgot us) triggers a new registration."""
        try:
            request_json(
                "POST",
                f"{self.router_url}/api/modules/heartbeat",
                json={"module_name": self.payload["module_name"], "status": "active"},
                headers=self._headers,
                timeout=5,
            )
        except HttpError as exc:
            self.last_error = str(exc)
            if exc.status == 404:
                return self.register_once()
            return False
        return True

    def _run(self) -> None:
        delay = 0.25
        while not self._stop.is_set() and not self.register_once():
            self._stop.wait(delay)
            delay = min(self.max_backoff, delay * 2)
        while not self._stop.wait(self.heartbeat_interval):
            self.heartbeat_once()

    def start(self) -> ModuleRegistration:
        """Start the background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name=f"register-{self.payload['module_name']}"
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop heartbeating."""
        self._stop.set()


@dataclasses.dataclass(frozen=True)
class CallUser:
    """Who typed the command, as the router resolved them."""

    id: int | None
    platform_user_id: str
    name: str
    role: str


@dataclasses.dataclass(frozen=True)
class CommandCall:
    """The router's call to a module (DESIGN §8)."""

    session_id: str
    execution_id: str
    entity_id: str
    community_id: int | None
    platform: str
    server_id: str
    channel_id: str
    user: CallUser
    command: str | None
    prefix: str | None
    args: tuple[str, ...]
    args_text: str
    message_content: str | None
    message_type: str
    metadata: dict

    @classmethod
    def parse(cls, data: Any) -> CommandCall:
        """Validate the router's payload; a ValidationError names the bad field."""
        if not isinstance(data, dict):
            raise ValidationError("body must be a JSON object", field="body")

        def text(name, *, required=True):
            value = data.get(name)
            if value is None and not required:
                return None
            if not isinstance(value, str) or (required and not value):
                raise ValidationError(f"{name} must be a non-empty string", field=name)
            return value

        user = data.get("user")
        if not isinstance(user, dict):
            raise ValidationError("user must be an object", field="user")
        args = data.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValidationError("args must be a list of strings", field="args")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValidationError("metadata must be an object", field="metadata")
        return cls(
            session_id=text("session_id"),
            execution_id=text("execution_id"),
            entity_id=text("entity_id"),
            community_id=data.get("community_id"),
            platform=text("platform"),
            server_id=text("server_id"),
            channel_id=text("channel_id"),
            user=CallUser(
                id=user.get("id"),
                platform_user_id=str(user.get("platform_user_id")),
                name=str(user.get("name") or user.get("platform_user_id")),
                role=str(user.get("role") or "member"),
            ),
            command=text("command", required=False),
            prefix=text("prefix", required=False),
            args=tuple(args),
            args_text=data.get("args_text") or "",
            message_content=data.get("message_content"),
            message_type=text("message_type"),
            metadata=metadata,
        )
