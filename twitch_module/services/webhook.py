"""The EventSub webhook: verify, de-duplicate, store, acknowledge (DESIGN §6).

Order matters: the signature is checked before anything is parsed or stored (403 and
nothing stored otherwise), then the timestamp window, then the message type.
A notification is written to ``twitch_events`` and committed *before* the 2xx answer
(in a group commit shared with concurrent requests), so Twitch never hears "received"
for something that could be lost; forwarding to the router happens afterwards on the
forwarder thread. A message id already seen is acknowledged and ignored: for
notifications the unique index on ``message_id`` decides, in the same statement that
stores the row (no store round trip on the request path, and a store outage does not
stop notifications); a revocation, which stores nothing of its own, is remembered in
the store (``SET NX`` with a TTL)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Callable, Mapping

from waddlebot.db import Database, utcnow
from waddlebot.settings import Secret
from waddlebot.store import Store
from waddlebot.twitch import eventsub
from waddlebot.web import ApiError, ServiceUnavailable, ValidationError

from .event_log import DUPLICATE, NotificationWriter, StoredNotification
from .events import SUPPORTED_TYPES
from .subscriptions import record_revocation, record_verification

log = logging.getLogger("waddlebot.twitch.webhook")

SEEN_PREFIX = "twitch:eventsub:seen:"


class SignatureRejected(ApiError):
    """The message is not provably from Twitch, or is too old to accept."""

    status = 403
    code = "forbidden"


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    """The webhook's answer: status, plain-text body, and what happened."""

    status: int
    outcome: str
    text: str = ""


class EventSubReceiver:
    """Handles one webhook request; usable without HTTP (headers + raw body in)."""

    def __init__(
        self,
        *,
        database: Database,
        store: Store,
        secret: Secret,
        max_age: float = eventsub.MAX_AGE_SECONDS,
        on_stored: Callable[[list[StoredNotification]], None] | None = None,
    ):
        self.database = database
        self.store = store
        self._secret = secret
        self.max_age = max_age
        # a replayed message older than max_age is refused by the timestamp check, so
        # the id only needs remembering a little longer than that
        self.seen_ttl = max_age + 300
        # with a consumer, fresh rows go to it from memory right after the commit
        self.writer = NotificationWriter(database, on_committed=on_stored)

    def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime.datetime | None = None
    ) -> Receipt:
        """Verify and handle one message; raises ApiError subclasses for 4xx/5xx answers."""
        if not self._secret:
            raise ServiceUnavailable("TWITCH_WEBHOOK_SECRET is not configured")
        message_id = headers.get(eventsub.MESSAGE_ID) or ""
        timestamp = headers.get(eventsub.MESSAGE_TIMESTAMP) or ""
        presented = headers.get(eventsub.MESSAGE_SIGNATURE)
        if not eventsub.verify_signature(
            self._secret.reveal(), message_id, timestamp, body, presented
        ):
            raise SignatureRejected(
                "invalid or missing Twitch-Eventsub-Message-Signature",
                field=eventsub.MESSAGE_SIGNATURE,
                code="invalid_signature",
            )
        try:
            sent_at = eventsub.parse_timestamp(timestamp)
        except ValueError:
            raise SignatureRejected(
                "Twitch-Eventsub-Message-Timestamp is not an RFC 3339 time",
                field=eventsub.MESSAGE_TIMESTAMP,
                code="invalid_timestamp",
            ) from None
        current = now or utcnow()
        if current.tzinfo is None:
            current = current.replace(tzinfo=datetime.UTC)
        if not eventsub.is_fresh(sent_at, now=current, max_age=self.max_age):
            raise SignatureRejected(
                f"message timestamp is more than {int(self.max_age)} seconds away from now",
                field=eventsub.MESSAGE_TIMESTAMP,
                code="stale_message",
            )
        message = _json_object(body)
        kind = headers.get(eventsub.MESSAGE_TYPE)
        subscription = message.get("subscription")
        if not isinstance(subscription, dict):
            raise ValidationError("subscription must be an object", field="subscription")
        if kind == eventsub.VERIFICATION:
            challenge = message.get("challenge")
            if not isinstance(challenge, str) or not challenge:
                raise ValidationError("challenge is required", field="challenge")
            with self.database.connection() as db:
                record_verification(db, subscription)
            log.info(
                "verified EventSub subscription %s (%s)",
                subscription.get("id"),
                subscription.get("type"),
            )
            return Receipt(200, "challenge", challenge)
        if kind == eventsub.REVOCATION:
            if not self._first_sight(message_id):
                return Receipt(204, "duplicate")
            try:
                with self.database.connection() as db:
                    record_revocation(db, subscription)
            except BaseException:
                self._forget(message_id)
                raise
            log.warning(
                "Twitch revoked EventSub subscription %s (%s for %s): %s",
                subscription.get("id"),
                subscription.get("type"),
                eventsub.condition_broadcaster(subscription.get("condition")),
                subscription.get("status"),
            )
            return Receipt(204, "revoked")
        if kind == eventsub.NOTIFICATION:
            return self._notification(message_id, sent_at, subscription, message, headers)
        raise ValidationError(
            "Twitch-Eventsub-Message-Type must be one of: " + ", ".join(eventsub.MESSAGE_TYPES),
            field=eventsub.MESSAGE_TYPE,
        )

    def _notification(self, message_id, sent_at, subscription, message, headers) -> Receipt:
        event = message.get("event")
        if not isinstance(event, dict):
            raise ValidationError("event must be an object", field="event")
        subscription_type = subscription.get("type") or headers.get(eventsub.SUBSCRIPTION_TYPE)
        if not isinstance(subscription_type, str) or not subscription_type:
            raise ValidationError("subscription.type is required", field="subscription.type")
        supported = subscription_type in SUPPORTED_TYPES
        received = utcnow()
        broadcaster = (
            event.get("broadcaster_user_id")
            or event.get("to_broadcaster_user_id")
            or eventsub.condition_broadcaster(subscription.get("condition"))
        )
        row = dict(
            message_id=message_id[:128],
            subscription_id=str(subscription.get("id") or "")[:64] or None,
            subscription_type=subscription_type[:64],
            subscription_version=str(subscription.get("version") or "")[:8] or None,
            broadcaster_user_id=str(broadcaster)[:64] if broadcaster else None,
            payload=message,
            message_timestamp=sent_at.replace(tzinfo=None),
            received_at=received,
            status="pending" if supported else "ignored",
            forwarded=False,
            forward_attempts=0,
            next_attempt_at=received if supported else None,
            last_error=None if supported else f"unsupported subscription type {subscription_type}",
            processed_at=None if supported else received,
        )
        try:
            result = self.writer.store(row)
        except Exception as exc:  # noqa: BLE001 - any failure means "not stored"
            # not stored, so not acknowledged: Twitch retries the same id later
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("could not store EventSub message: %s %s", type(exc).__name__, first)
            raise ServiceUnavailable(
                "the notification could not be stored; Twitch will retry it", retry_after=1
            ) from None
        if result == DUPLICATE:
            return Receipt(204, "duplicate")
        return Receipt(204, "stored" if supported else "ignored")

    def _first_sight(self, message_id: str) -> bool:
        return self.store.set(SEEN_PREFIX + message_id, "1", ttl=self.seen_ttl, nx=True)

    def _forget(self, message_id: str) -> None:
        try:
            self.store.delete(SEEN_PREFIX + message_id)
        except Exception:  # noqa: BLE001 - the original failure is what the caller sees
            log.warning("could not forget EventSub message id after a failed store")


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("body must be a JSON object", field="body")
    return data
