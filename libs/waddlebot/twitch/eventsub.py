"""EventSub webhook messages: signatures, timestamps and per-channel subscription types.

Twitch signs every webhook message with HMAC-SHA256 keyed by the secret given when
the subscription was created, over ``message id + timestamp + raw body``, and sends
``sha256=<hex digest>`` in ``Twitch-Eventsub-Message-Signature``. A receiver checks
the signature in constant time, refuses messages older than ten minutes and ignores a
message id it has already seen. :func:`signed_headers` builds the headers exactly as
Twitch sends them, so tests and benchmarks exercise the real verification path.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping

MESSAGE_ID = "Twitch-Eventsub-Message-Id"
MESSAGE_RETRY = "Twitch-Eventsub-Message-Retry"
MESSAGE_TYPE = "Twitch-Eventsub-Message-Type"
MESSAGE_SIGNATURE = "Twitch-Eventsub-Message-Signature"
MESSAGE_TIMESTAMP = "Twitch-Eventsub-Message-Timestamp"
SUBSCRIPTION_TYPE = "Twitch-Eventsub-Subscription-Type"
SUBSCRIPTION_VERSION = "Twitch-Eventsub-Subscription-Version"

NOTIFICATION = "notification"
VERIFICATION = "webhook_callback_verification"
REVOCATION = "revocation"
MESSAGE_TYPES = (NOTIFICATION, VERIFICATION, REVOCATION)

#: Twitch's advice: reject messages whose timestamp is older than this
MAX_AGE_SECONDS = 600
SIGNATURE_PREFIX = "sha256="

_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})$"
)


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def signature(secret: str | bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The ``sha256=<hex>`` signature Twitch computes for one message."""
    mac = hmac.new(_key(secret), digestmod=hashlib.sha256)
    mac.update(message_id.encode("utf-8"))
    mac.update(timestamp.encode("utf-8"))
    mac.update(body)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str | bytes, message_id: str, timestamp: str, body: bytes, presented: str | None
) -> bool:
    """Constant-time check of a presented ``Twitch-Eventsub-Message-Signature``."""
    if not presented or not message_id or not timestamp:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), presented.strip().encode("utf-8"))


def parse_timestamp(value: str) -> datetime.datetime:
    """An RFC 3339 timestamp (nanoseconds allowed) as an aware UTC datetime."""
    found = _TIMESTAMP.match((value or "").strip())
    if not found:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, clock, fraction, zone = found.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    if len(zone) == 5:
        zone = f"{zone[:3]}:{zone[3:]}"
    parsed = datetime.datetime.fromisoformat(f"{date}T{clock}.{micro}{zone}")
    return parsed.astimezone(datetime.UTC)


def format_timestamp(moment: datetime.datetime | None = None) -> str:
    """A timestamp the way Twitch writes it (UTC, nanosecond precision, ``Z``)."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def is_fresh(
    timestamp: datetime.datetime,
    *,
    now: datetime.datetime | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> bool:
    """True when the message time is within ``max_age`` seconds of now (either side)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return abs((now - timestamp).total_seconds()) <= max_age


def signed_headers(
    secret: str | bytes,
    body: bytes,
    *,
    message_type: str = NOTIFICATION,
    subscription_type: str = "channel.follow",
    subscription_version: str = "1",
    message_id: str | None = None,
    timestamp: str | None = None,
    retry: int = 0,
) -> dict[str, str]:
    """The headers Twitch sends with one webhook message, correctly signed."""
    message_id = message_id or str(uuid.uuid4())
    timestamp = timestamp or format_timestamp()
    return {
        MESSAGE_ID: message_id,
        MESSAGE_RETRY: str(retry),
        MESSAGE_TYPE: message_type,
        MESSAGE_SIGNATURE: signature(secret, message_id, timestamp, body),
        MESSAGE_TIMESTAMP: timestamp,
        SUBSCRIPTION_TYPE: subscription_type,
        SUBSCRIPTION_VERSION: subscription_version,
        "Content-Type": "application/json",
    }


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """One EventSub subscription to create: type, version and condition."""

    type: str
    version: str
    condition: Mapping[str, str]

    def body(self, *, callback: str, secret: str) -> dict:
        """The ``POST /eventsub/subscriptions`` body with a webhook transport."""
        return {
            "type": self.type,
            "version": self.version,
            "condition": dict(self.condition),
            "transport": {"method": "webhook", "callback": callback, "secret": secret},
        }


#: EventSub types a collector subscribes to for every channel it watches
CHANNEL_TYPES = (
    "channel.chat.message",
    "channel.follow",
    "channel.subscribe",
    "channel.subscription.message",
    "channel.subscription.gift",
    "channel.cheer",
    "channel.raid",
    "channel.ban",
    "stream.online",
    "stream.offline",
)


def channel_subscriptions(broadcaster_id: str, bot_user_id: str | None) -> list[SubscriptionSpec]:
    """The subscriptions one watched channel needs (chat only when the bot is known)."""
    own = {"broadcaster_user_id": broadcaster_id}
    specs = []
    if bot_user_id:
        specs.append(
            SubscriptionSpec(
                "channel.chat.message",
                "1",
                {"broadcaster_user_id": broadcaster_id, "user_id": bot_user_id},
            )
        )
    specs += [
        SubscriptionSpec(
            "channel.follow",
            "2",
            {"broadcaster_user_id": broadcaster_id, "moderator_user_id": broadcaster_id},
        ),
        SubscriptionSpec("channel.subscribe", "1", own),
        SubscriptionSpec("channel.subscription.message", "1", own),
        SubscriptionSpec("channel.subscription.gift", "1", own),
        SubscriptionSpec("channel.cheer", "1", own),
        SubscriptionSpec("channel.raid", "1", {"to_broadcaster_user_id": broadcaster_id}),
        SubscriptionSpec("channel.ban", "1", own),
        SubscriptionSpec("stream.online", "1", own),
        SubscriptionSpec("stream.offline", "1", own),
    ]
    return specs


def condition_broadcaster(condition: Mapping | None) -> str | None:
    """The channel a subscription condition is about (``to_broadcaster`` for raids)."""
    condition = condition or {}
    for key in ("broadcaster_user_id", "to_broadcaster_user_id", "from_broadcaster_user_id"):
        value = condition.get(key)
        if isinstance(value, str) and value:
            return value
    return None
