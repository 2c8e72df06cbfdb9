"""What the router pushes to ``/api/twitch/responses`` (DESIGN §8), turned into actions.

The body is a module response (``response_action``, ``chat_message`` ...) plus the
entity fields, and for moderation ``"moderation": {"action": "delete" | "warn",
"message_id"}``. Chat text goes to the channel's chat queue; ``delete`` removes the
message. Both happen after the 202 answer.
"""

from __future__ import annotations

import dataclasses

from waddlebot.web import ValidationError

MODERATION_ACTIONS = ("delete", "warn")


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """One pushed response, reduced to what Twitch needs."""

    broadcaster_id: str
    chat_message: str | None
    moderation_action: str | None = None
    message_id: str | None = None


def _optional_text(body: dict, name: str, max_len: int, *, label: str | None = None) -> str | None:
    label = label or name
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be a string", field=label)
    if len(value) > max_len:
        raise ValidationError(f"{label} is longer than {max_len} characters", field=label)
    return value.strip() or None


def parse_reply(body: dict) -> Reply:
    """Validate a pushed response; ValidationError names the first bad field."""
    platform = body.get("platform", "twitch")
    if platform != "twitch":
        raise ValidationError("platform must be twitch", field="platform")
    channel = _optional_text(body, "channel_id", 64)
    entity_id = _optional_text(body, "entity_id", 200)
    if channel is None and entity_id and entity_id.startswith("twitch:"):
        channel = entity_id.rsplit(":", 1)[-1] or None
    if channel is None or not channel.isdigit():
        raise ValidationError("channel_id must be the broadcaster's numeric id", field="channel_id")
    action = body.get("response_action", "chat")
    chat = _optional_text(body, "chat_message", 4000) if action in ("chat", "media") else None
    moderation = body.get("moderation")
    if moderation is None:
        return Reply(channel, chat)
    if not isinstance(moderation, dict):
        raise ValidationError("moderation must be an object", field="moderation")
    what = moderation.get("action")
    if what not in MODERATION_ACTIONS:
        raise ValidationError(
            f"moderation.action must be one of: {', '.join(MODERATION_ACTIONS)}",
            field="moderation.action",
        )
    message_id = _optional_text(moderation, "message_id", 128, label="moderation.message_id")
    if what == "delete" and message_id is None:
        raise ValidationError(
            "moderation.message_id is required to delete", field="moderation.message_id"
        )
    return Reply(channel, chat, what, message_id)
