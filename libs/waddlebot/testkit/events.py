"""Builders for the event contract of DESIGN §5."""

from __future__ import annotations

import uuid


def chat_event(
    text: str,
    *,
    platform: str = "console",
    channel: str = "demo",
    server: str | None = None,
    user: str = "alice",
    user_name: str | None = None,
    roles: list[str] | None = None,
    owner: str | None = None,
    event_id: str | None = None,
    **extra,
) -> dict:
    """A chatMessage event; a fresh event id unless one is given."""
    event = {
        "platform": platform,
        "server_id": server or channel,
        "channel_id": channel,
        "user_id": user,
        "user_name": user_name or user,
        "message_type": "chatMessage",
        "message_content": text,
        "event_id": event_id or uuid.uuid4().hex,
        "user_roles": roles or [],
    }
    if owner:
        event["owner_user_id"] = owner
    event.update(extra)
    return event


def platform_event(
    message_type: str,
    *,
    platform: str = "twitch",
    channel: str = "demo",
    server: str | None = None,
    user: str = "bob",
    user_name: str | None = None,
    metadata: dict | None = None,
    event_id: str | None = None,
    **extra,
) -> dict:
    """A non-chat event (follow, raid, cheer …) with its metadata."""
    event = {
        "platform": platform,
        "server_id": server or channel,
        "channel_id": channel,
        "user_id": user,
        "user_name": user_name or user,
        "message_type": message_type,
        "event_id": event_id or uuid.uuid4().hex,
        "metadata": metadata or {},
    }
    event.update(extra)
    return event
