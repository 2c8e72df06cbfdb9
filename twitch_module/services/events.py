"""EventSub notifications → the router's event contract (DESIGN §5) and activities.

:func:`translate` classifies one stored notification: an event for
``/api/router/events`` (with the activity it records, if any), a live-status update for
the coordination API (``stream.online`` / ``stream.offline``), or nothing to forward.
Twitch has channels and no servers, so ``server_id = channel_id = broadcaster id``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from waddlebot.contracts import entity_id_for
from waddlebot.twitch import eventsub

PLATFORM = "twitch"
ANONYMOUS_ID = "anonymous"
ANONYMOUS_NAME = "Anonymous"

#: Twitch badge set ids → the platform roles of DESIGN §5 (highest first)
BADGE_ROLES = {
    "broadcaster": "broadcaster",
    "lead_moderator": "moderator",
    "moderator": "moderator",
    "vip": "vip",
    "subscriber": "subscriber",
    "founder": "subscriber",
}
ROLE_ORDER = ("broadcaster", "moderator", "vip", "subscriber")

#: fixed activity points (spec "Activity Processing"); bits are worth their amount
ACTIVITY_POINTS = {"follow": 10, "sub": 50, "resub": 50, "raid": 30, "subgift": 60, "ban": -10}

#: every EventSub type the collector subscribes to is one it can translate
SUPPORTED_TYPES = eventsub.CHANNEL_TYPES


class TranslationError(ValueError):
    """The notification lacks a field the router needs; retrying will not help."""


@dataclasses.dataclass(frozen=True, slots=True)
class Activity:
    """A reputation-bearing activity (spec names: follow, sub, resub, bits, raid ...)."""

    activity_type: str
    user_id: str
    user_name: str
    amount: int
    points: int


@dataclasses.dataclass(frozen=True, slots=True)
class Translation:
    """What to do with one notification: ``event``, ``status`` or ``ignore``."""

    kind: str
    broadcaster_id: str | None = None
    event: dict | None = None
    activity: Activity | None = None
    status: dict | None = None
    reason: str | None = None
    #: roles the bot itself showed in a chat message (moderator, vip ...)
    bot_roles: tuple[str, ...] | None = None


def roles_from_badges(badges) -> list[str]:
    """Platform roles from a chat message's ``badges`` (highest first, no duplicates)."""
    found = set()
    for badge in badges or ():
        if isinstance(badge, Mapping):
            role = BADGE_ROLES.get(str(badge.get("set_id") or ""))
            if role:
                found.add(role)
    return [role for role in ROLE_ORDER if role in found]


def _text(data: Mapping, name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise TranslationError(f"event.{name} is missing")
        return None
    return value


def _int(data: Mapping, name: str, default: int = 0) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


def _user(event: Mapping, prefix: str = "user") -> tuple[str, str]:
    """(id, display name) from the ``<prefix>_id/_name/_login`` fields; anonymous if absent."""
    user_id = _text(event, f"{prefix}_id", required=False)
    if user_id is None:
        return ANONYMOUS_ID, ANONYMOUS_NAME
    name = (
        _text(event, f"{prefix}_name", required=False)
        or _text(event, f"{prefix}_login", required=False)
        or user_id
    )
    return user_id, name


def _router_event(
    broadcaster: str,
    *,
    user_id: str,
    user_name: str,
    message_type: str,
    event_id: str,
    metadata: dict,
    content: str | None = None,
    roles: list[str] | None = None,
) -> dict:
    event = {
        "platform": PLATFORM,
        "server_id": broadcaster,
        "channel_id": broadcaster,
        "user_id": user_id,
        "user_name": user_name[:255],
        "message_type": message_type,
        "event_id": event_id,
        "metadata": {k: v for k, v in metadata.items() if v is not None},
        "owner_user_id": broadcaster,
    }
    if content is not None:
        event["message_content"] = content
    if roles:
        event["user_roles"] = roles
    return event


def translate(
    subscription_type: str, payload: Mapping, *, message_id: str, bot_user_id: str | None = None
) -> Translation:
    """Classify one notification body (``{"subscription", "event"}``)."""
    if subscription_type not in SUPPORTED_TYPES:
        return Translation("ignore", reason=f"unsupported subscription type {subscription_type}")
    event = payload.get("event") if isinstance(payload, Mapping) else None
    if not isinstance(event, Mapping):
        raise TranslationError("notification has no event object")
    if subscription_type == "channel.raid":
        broadcaster = _text(event, "to_broadcaster_user_id")
    else:
        broadcaster = _text(event, "broadcaster_user_id")
    handler = _HANDLERS[subscription_type]
    return handler(event, broadcaster, message_id, bot_user_id)


def _chat(event, broadcaster, message_id, bot_user_id) -> Translation:
    chatter_id, chatter_name = _user(event, "chatter_user")
    roles = roles_from_badges(event.get("badges"))
    if bot_user_id and chatter_id == bot_user_id:
        return Translation(
            "ignore", broadcaster, reason="the bot's own message", bot_roles=tuple(roles)
        )
    message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    if not text.strip():
        return Translation("ignore", broadcaster, reason="empty chat message")
    chat_id = _text(event, "message_id")
    reply = event.get("reply") if isinstance(event.get("reply"), Mapping) else {}
    cheer = event.get("cheer") if isinstance(event.get("cheer"), Mapping) else {}
    metadata = {
        "message_id": chat_id,
        "chat_message_type": event.get("message_type"),
        "reply_parent_message_id": reply.get("parent_message_id"),
        "bits": _int(cheer, "bits") or None,
        "eventsub_message_id": message_id,
    }
    return Translation(
        "event",
        broadcaster,
        event=_router_event(
            broadcaster,
            user_id=chatter_id,
            user_name=chatter_name,
            message_type="chatMessage",
            event_id=chat_id,
            metadata=metadata,
            content=text[:4000],
            roles=roles,
        ),
    )


def _activity_event(
    broadcaster: str,
    message_id: str,
    *,
    user: tuple[str, str],
    message_type: str,
    activity_type: str,
    metadata: dict,
    amount: int = 0,
    points: int | None = None,
) -> Translation:
    user_id, user_name = user
    if points is None:
        points = ACTIVITY_POINTS[activity_type]
    return Translation(
        "event",
        broadcaster,
        event=_router_event(
            broadcaster,
            user_id=user_id,
            user_name=user_name,
            message_type=message_type,
            event_id=message_id,
            metadata={"message_id": message_id, **metadata},
        ),
        activity=Activity(activity_type, user_id, user_name, amount, points),
    )


def _follow(event, broadcaster, message_id, bot_user_id) -> Translation:
    return _activity_event(
        broadcaster,
        message_id,
        user=_user(event),
        message_type="follow",
        activity_type="follow",
        metadata={"followed_at": event.get("followed_at")},
    )


def _subscribe(event, broadcaster, message_id, bot_user_id) -> Translation:
    return _activity_event(
        broadcaster,
        message_id,
        user=_user(event),
        message_type="subscription",
        activity_type="sub",
        metadata={"tier": event.get("tier"), "is_gift": bool(event.get("is_gift"))},
    )


def _resub(event, broadcaster, message_id, bot_user_id) -> Translation:
    message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
    return _activity_event(
        broadcaster,
        message_id,
        user=_user(event),
        message_type="resub",
        activity_type="resub",
        metadata={
            "tier": event.get("tier"),
            "months": _int(event, "cumulative_months") or None,
            "streak_months": event.get("streak_months"),
            "duration_months": event.get("duration_months"),
            "message": message.get("text"),
        },
    )


def _subgift(event, broadcaster, message_id, bot_user_id) -> Translation:
    gifts = max(1, _int(event, "total", 1))
    anonymous = bool(event.get("is_anonymous"))
    return _activity_event(
        broadcaster,
        message_id,
        user=(ANONYMOUS_ID, ANONYMOUS_NAME) if anonymous else _user(event),
        message_type="subgift",
        activity_type="subgift",
        metadata={
            "gifts": gifts,
            "tier": event.get("tier"),
            "cumulative_total": event.get("cumulative_total"),
            "is_anonymous": anonymous,
        },
        amount=gifts,
        # the router awards 60 per gifted sub; the activity row records the same
        points=ACTIVITY_POINTS["subgift"] * min(gifts, 1000),
    )


def _cheer(event, broadcaster, message_id, bot_user_id) -> Translation:
    bits = max(0, _int(event, "bits"))
    anonymous = bool(event.get("is_anonymous"))
    return _activity_event(
        broadcaster,
        message_id,
        user=(ANONYMOUS_ID, ANONYMOUS_NAME) if anonymous else _user(event),
        message_type="cheer",
        activity_type="bits",
        metadata={"amount": bits, "message": event.get("message"), "is_anonymous": anonymous},
        amount=bits,
        points=bits,
    )


def _raid(event, broadcaster, message_id, bot_user_id) -> Translation:
    raider = _text(event, "from_broadcaster_user_id")
    name = (
        _text(event, "from_broadcaster_user_name", required=False)
        or _text(event, "from_broadcaster_user_login", required=False)
        or raider
    )
    viewers = max(0, _int(event, "viewers"))
    return _activity_event(
        broadcaster,
        message_id,
        user=(raider, name),
        message_type="raid",
        activity_type="raid",
        metadata={
            "viewers": viewers,
            "from_broadcaster_login": event.get("from_broadcaster_user_login"),
        },
        amount=viewers,
    )


def _ban(event, broadcaster, message_id, bot_user_id) -> Translation:
    return _activity_event(
        broadcaster,
        message_id,
        user=_user(event),
        message_type="ban",
        activity_type="ban",
        metadata={
            "reason": event.get("reason"),
            "moderator_user_id": event.get("moderator_user_id"),
            "moderator_user_name": event.get("moderator_user_name"),
            "is_permanent": event.get("is_permanent"),
            "ends_at": event.get("ends_at"),
        },
    )


def _stream(is_live: bool):
    def handler(event, broadcaster, message_id, bot_user_id) -> Translation:
        entity_id = entity_id_for(PLATFORM, broadcaster, broadcaster)
        return Translation(
            "status", broadcaster, status={"entity_id": entity_id, "is_live": is_live}
        )

    return handler


_HANDLERS = {
    "channel.chat.message": _chat,
    "channel.follow": _follow,
    "channel.subscribe": _subscribe,
    "channel.subscription.message": _resub,
    "channel.subscription.gift": _subgift,
    "channel.cheer": _cheer,
    "channel.raid": _raid,
    "channel.ban": _ban,
    "stream.online": _stream(True),
    "stream.offline": _stream(False),
}
