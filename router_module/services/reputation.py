"""Activity points per platform (spec "Activity Processing", Discord/Slack module tables)."""

from __future__ import annotations

from waddlebot.web import ValidationError

#: fixed points per message type; ``None`` means "the event's amount"
POINTS = {
    "twitch": {
        "follow": 10,
        "subscription": 50,
        "resub": 50,
        "cheer": None,
        "raid": 30,
        "subgift": 60,
        "ban": -10,
        "donation": None,
    },
    "discord": {
        "chatMessage": 5,
        "reaction": 2,
        "member_join": 10,
        "voice_join": 8,
        "voice_time": "per_minute",
        "boost": 100,
    },
    "slack": {
        "chatMessage": 5,
        "file_share": 15,
        "reaction": 3,
        "member_join": 10,
        "app_mention": 8,
    },
    "console": {
        "follow": 10,
        "subscription": 50,
        "resub": 50,
        "cheer": None,
        "raid": 30,
        "subgift": 60,
        "ban": -10,
        "donation": None,
    },
}

#: the spec's short activity names
ALIASES = {
    "sub": "subscription",
    "bits": "cheer",
    "message": "chatMessage",
    "gift": "subgift",
    "subscribe": "subscription",
}


def _number(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number", field=field)
    return int(value)


def points_for(platform: str, activity_type: str, metadata: dict | None = None) -> int:
    """Points an activity is worth on a platform (0 when it earns none)."""
    metadata = metadata or {}
    activity = ALIASES.get(activity_type, activity_type)
    rule = POINTS.get(platform, {}).get(activity, 0)
    if rule is None:
        amount = metadata.get("amount", 0)
        return max(0, min(_number(amount, "amount"), 1_000_000))
    if rule == "per_minute":
        seconds = metadata.get("duration_s", 0)
        return max(0, _number(seconds, "duration_s") // 60)
    gifts = metadata.get("gifts")
    if (
        activity == "subgift"
        and isinstance(gifts, int)
        and not isinstance(gifts, bool)
        and gifts > 1
    ):
        return rule * min(gifts, 1000)
    return rule
