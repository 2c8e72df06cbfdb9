"""OBS overlays: one unguessable key per entity, and the server-sent event stream.

The router publishes every ``media``/``ticker``/``form`` response as JSON
``{"id", "entity_id", …response fields}`` on the store channel ``overlay:<entity_id>``
and keeps the last ones newest-first in ``overlay:recent:<entity_id>``.
:func:`event_stream` turns that into server-sent events: a ``retry:`` hint so
EventSource reconnects by itself, a replay of what a reconnecting browser missed
(``Last-Event-ID``), live events, a ``: ping`` comment every heartbeat, and an end
after a maximum lifetime so no server thread is held forever.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator

from waddlebot.db import utcnow
from waddlebot.store import Store, StoreUnavailable

log = logging.getLogger("waddlebot.portal.overlays")

#: random bytes in an overlay key (192 bits, URL-safe base64 ⇒ 32 characters)
KEY_BYTES = 24
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,64}")
OVERLAY_KINDS = ("media", "ticker", "form")
REPLAY_SIZE = 50


def overlay_channel(entity_id: str) -> str:
    """The store channel the router publishes an entity's overlay responses on."""
    return f"overlay:{entity_id}"


def recent_key(entity_id: str) -> str:
    """The store list that keeps an entity's latest overlay responses, newest first."""
    return f"overlay:recent:{entity_id}"


def new_key() -> str:
    """A fresh overlay key."""
    return secrets.token_urlsafe(KEY_BYTES)


def key_digest(key: str) -> str:
    """A digest that names a key in control messages without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()


def overlay_url(public_base_url: str, key: str) -> str:
    """The OBS browser-source address of an overlay key."""
    return f"{public_base_url.rstrip('/')}/overlay/{key}"


def key_for_entity(db, entity_id: str) -> str:
    """The entity's overlay key, created on first request."""
    table = db.portal_overlay_keys
    row = db(table.entity_id == entity_id).select(table.overlay_key).first()
    if row is not None:
        return row.overlay_key
    key = new_key()
    try:
        table.insert(entity_id=entity_id, overlay_key=key)
        db.commit()
    except Exception:  # noqa: BLE001 - a concurrent first request won the unique index
        db.rollback()
        row = db(table.entity_id == entity_id).select(table.overlay_key).first()
        if row is None:
            raise
        return row.overlay_key
    return key


def rotate_key(db, entity_id: str) -> tuple[str | None, str]:
    """Replace the entity's key; returns (old key or None, new key)."""
    table = db.portal_overlay_keys
    row = db(table.entity_id == entity_id).select().first()
    key = new_key()
    if row is None:
        table.insert(entity_id=entity_id, overlay_key=key)
        return None, key
    old = row.overlay_key
    row.update_record(overlay_key=key, rotated_at=utcnow())
    return old, key


def entity_for_key(db, key: str) -> str | None:
    """The entity an overlay key belongs to, or None for any other string."""
    if not KEY_PATTERN.fullmatch(key or ""):
        return None
    table = db.portal_overlay_keys
    row = db(table.overlay_key == key).select(table.entity_id).first()
    return row.entity_id if row is not None else None


def announce_rotation(store: Store, entity_id: str, old_key: str | None) -> None:
    """Tell open streams of the old key to end (their browsers then get a 404)."""
    if not old_key:
        return
    message = {"control": "key_rotated", "revoked": key_digest(old_key)}
    try:
        store.publish(overlay_channel(entity_id), json.dumps(message))
    except StoreUnavailable as exc:
        log.warning("could not announce the key rotation of %s: %s", entity_id, exc)


def test_event(kind: str, *, entity_id: str, image_url: str) -> dict:
    """A test alert as the router would publish it (no id: it is not replayed)."""
    if kind == "ticker":
        return {
            "entity_id": entity_id,
            "response_action": "ticker",
            "ticker_text": "WaddleBot test alert: your ticker overlay works.",
            "ticker_duration": 8,
            "test": True,
        }
    return {
        "entity_id": entity_id,
        "response_action": "media",
        "media_type": "image",
        "media_url": image_url,
        "chat_message": "WaddleBot test alert",
        "response_data": {"duration": 5, "caption": "WaddleBot test alert"},
        "test": True,
    }


def publish_test_event(store: Store, event: dict) -> int:
    """Publish a test alert to the entity's open overlays; returns how many got it."""
    return store.publish(overlay_channel(event["entity_id"]), json.dumps(event))


def parse_event_id(value) -> int | None:
    """A ``Last-Event-ID`` value as an integer, None when absent or malformed."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _decode(raw: str) -> dict | None:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _event_id(event: dict) -> int | None:
    value = event.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def format_event(event: dict, *, last_id: int | None = None) -> str:
    """One server-sent event: an ``id:`` line (when there is one) and one ``data:`` line.

    ``last_id`` is the highest id this connection has sent: the ``id:`` line never goes
    below it, so a reconnect does not replay what the browser already showed.
    """
    lines = []
    event_id = _event_id(event)
    if event_id is not None or last_id is not None:
        lines.append(f"id: {max(i for i in (event_id, last_id) if i is not None)}")
    lines.append("data: " + json.dumps(event, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


class _Seen:
    """The ids a connection has sent (bounded), and the highest of them."""

    def __init__(self, high: int, size: int = 500):
        self.high = high
        self._ids: deque[int] = deque(maxlen=size)

    def add(self, event_id: int | None) -> bool:
        """Remember an id; False when it was already sent."""
        if event_id is None:
            return True
        if event_id in self._ids:
            return False
        self._ids.append(event_id)
        self.high = max(self.high, event_id)
        return True


def event_stream(
    store: Store,
    *,
    entity_id: str,
    key: str,
    last_event_id: int | None,
    only: str | None,
    retry_ms: int,
    heartbeat: float,
    max_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[str]:
    """Server-sent events of one overlay connection (see the module docstring)."""
    started = clock()
    subscription = store.subscribe(overlay_channel(entity_id))
    try:
        yield f"retry: {retry_ms}\n: connected\n\n"
        recent = [e for e in map(_decode, store.recent(recent_key(entity_id), REPLAY_SIZE)) if e]
        recent.sort(key=lambda e: _event_id(e) or 0)
        newest = max((i for i in map(_event_id, recent) if i is not None), default=0)
        if last_event_id is None:
            # where this connection started: a reconnect replays only what came after
            seen = _Seen(newest)
            for event in recent:
                seen.add(_event_id(event))
            yield _hello(newest)
        else:
            seen = _Seen(last_event_id)
            yield _hello(last_event_id)
            for event in recent:
                event_id = _event_id(event)
                if event_id is None or event_id <= last_event_id:
                    seen.add(event_id)
                elif seen.add(event_id) and _wanted(event, only):
                    yield format_event(event, last_id=seen.high)
        digest = key_digest(key)
        deadline = started + max_seconds
        next_ping = clock() + heartbeat
        while True:
            now = clock()
            if now >= deadline:
                return
            message = subscription.get(timeout=max(0.0, min(next_ping, deadline) - now))
            if message is None:
                if clock() >= next_ping:
                    yield ": ping\n\n"
                    next_ping = clock() + heartbeat
                continue
            event = _decode(message.data)
            if event is None:
                continue
            if event.get("control") == "key_rotated":
                if event.get("revoked") == digest:
                    return
                continue
            if seen.add(_event_id(event)) and _wanted(event, only):
                yield format_event(event, last_id=seen.high if _event_id(event) else None)
    except StoreUnavailable as exc:
        log.info("overlay stream of %s ended: store unavailable (%s)", entity_id, exc)
    finally:
        subscription.close()


def _hello(event_id: int) -> str:
    """The ``hello`` event that opens a stream and sets where a reconnect resumes."""
    return f"id: {event_id}\nevent: hello\ndata: {{}}\n\n"


def _wanted(event: dict, only: str | None) -> bool:
    action = event.get("response_action")
    return action in OVERLAY_KINDS and (only is None or action == only)
