"""Access-control fixtures for internal APIs (DESIGN §6).

Every non-public action checks a service key in ``X-API-Key`` against the keys of
``WADDLEBOT_API_KEYS`` in constant time, so a pod reached without Kong is not open.
Kong's consumer headers are exposed to the action through :class:`KongConsumer`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from py4web.core import HTTP, Fixture, request

from .settings import Secret


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _deny(status: int, message: str) -> HTTP:
    code = "unauthorized" if status == 401 else "forbidden"
    body = json.dumps({"error": {"code": code, "message": message, "field": "X-API-Key"}})
    return HTTP(status, body, headers={"Content-Type": "application/json"})


class ServiceKey(Fixture):
    """Require a valid service key in ``X-API-Key`` (401 when absent, 403 when wrong)."""

    header = "X-API-Key"

    def __init__(self, keys: Iterable[Secret]):
        # Compare digests so every comparison has the same length and timing.
        self._digests = tuple(_digest(k.reveal()) for k in keys if k)

    def is_valid_key(self, presented: str | None) -> bool:
        """Constant-time check of one presented key against every accepted key."""
        if not presented:
            return False
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched

    def on_request(self, context):
        """Reject the request before the action runs unless the key is valid."""
        presented = request.headers.get(self.header)
        if not presented:
            raise _deny(401, f"missing {self.header} header")
        if not self.is_valid_key(presented):
            raise _deny(403, f"invalid {self.header}")


class KongConsumer(Fixture):
    """Kong's consumer identity (``X-Consumer-Username``, ``X-Consumer-Groups``)."""

    def on_request(self, context):
        """Read the consumer headers Kong adds after key-auth and ACL."""
        Fixture.local_initialize(self)
        groups = request.headers.get("X-Consumer-Groups", "")
        self.local.username = request.headers.get("X-Consumer-Username")
        self.local.groups = frozenset(g.strip() for g in groups.split(",") if g.strip())

    @property
    def username(self) -> str | None:
        """The Kong consumer's username, None when the call did not pass through Kong."""
        return self.local.username

    @property
    def groups(self) -> frozenset[str]:
        """The consumer's ACL groups."""
        return self.local.groups
