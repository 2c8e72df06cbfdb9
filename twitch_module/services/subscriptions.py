"""EventSub subscriptions of the watched channels, kept in ``twitch_subscriptions``.

:class:`SubscriptionManager` creates the webhook subscriptions a claimed channel needs
(app token, ``TWITCH_WEBHOOK_CALLBACK_URL``, ``TWITCH_WEBHOOK_SECRET``), skipping those
already enabled or pending verification. Subscriptions belong to the app, not to one
container, so a released channel keeps them; whoever claims it next only fills gaps.
Twitch's verification challenge and revocations update the rows through
:func:`record_verification` and :func:`record_revocation`.
"""

from __future__ import annotations

import logging

from waddlebot.db import Database, utcnow
from waddlebot.http import HttpError
from waddlebot.settings import Secret
from waddlebot.twitch.eventsub import CHANNEL_TYPES, channel_subscriptions, condition_broadcaster
from waddlebot.twitch.helix import HelixClient

log = logging.getLogger("waddlebot.twitch.subscriptions")

ACTIVE_STATUSES = ("enabled", "webhook_callback_verification_pending")
#: revocations that recreating cannot fix until the broadcaster connects again
PERMANENT_REVOCATIONS = ("authorization_revoked", "user_removed", "version_removed")


def upsert_subscription(db, subscription: dict, **changes) -> None:
    """Insert or update the row of one Twitch subscription object (by its id)."""
    subscription_id = str(subscription.get("id") or "")[:64] or None
    values: dict = {}
    if subscription.get("type"):
        values["subscription_type"] = str(subscription["type"])[:64]
    if subscription.get("version"):
        values["version"] = str(subscription["version"])[:8]
    if subscription.get("condition"):
        values["condition"] = subscription["condition"]
        values["broadcaster_user_id"] = condition_broadcaster(subscription["condition"])
    if subscription.get("status"):
        values["status"] = str(subscription["status"])[:64]
    values.update(changes)
    table = db.twitch_subscriptions
    if subscription_id and db(table.subscription_id == subscription_id).update(**values):
        return
    values.setdefault("subscription_type", "unknown")
    values.setdefault("status", "unknown")
    table.insert(subscription_id=subscription_id, **values)


def record_verification(db, subscription: dict) -> None:
    """Twitch's challenge arrived and was answered: the subscription is enabled."""
    upsert_subscription(db, subscription, status="enabled")


def record_revocation(db, subscription: dict) -> None:
    """Twitch revoked a subscription: mark it and keep Twitch's reason."""
    reason = str(subscription.get("status") or "revoked")[:255]
    upsert_subscription(
        db, subscription, status="revoked", revoked_reason=reason, revoked_at=utcnow()
    )


def reopen_revoked(db, broadcaster_id: str) -> int:
    """The broadcaster connected again: permanently revoked types may be recreated."""
    table = db.twitch_subscriptions
    return db(
        (table.broadcaster_user_id == broadcaster_id)
        & (table.status == "revoked")
        & table.revoked_reason.belongs(PERMANENT_REVOCATIONS)
    ).update(status="superseded")


class SubscriptionManager:
    """Creates the EventSub subscriptions of a channel that are not there yet."""

    def __init__(
        self,
        *,
        database: Database,
        helix: HelixClient,
        callback: str,
        secret: Secret,
        bot_user_id: str | None,
        container_id: str,
    ):
        self.database = database
        self.helix = helix
        self.callback = callback
        self._secret = secret
        self.bot_user_id = bot_user_id
        self.container_id = container_id

    def _present_types(self, broadcaster_id: str) -> set[str]:
        with self.database.connection() as db:
            table = db.twitch_subscriptions
            rows = db(table.broadcaster_user_id == broadcaster_id).select(
                table.subscription_type, table.status, table.revoked_reason
            )
        present = set()
        for row in rows:
            if row.status in ACTIVE_STATUSES or (
                row.status == "revoked" and row.revoked_reason in PERMANENT_REVOCATIONS
            ):
                present.add(row.subscription_type)
        return present

    def ensure(self, broadcaster_id: str) -> dict:
        """Create the missing subscriptions; returns counts and the errors met."""
        if not self._secret:
            return {"created": 0, "errors": ["TWITCH_WEBHOOK_SECRET is not configured"]}
        present = self._present_types(broadcaster_id)
        created, conflicts, errors = 0, False, []
        for spec in channel_subscriptions(broadcaster_id, self.bot_user_id):
            if spec.type in present:
                continue
            try:
                subscription = self.helix.create_eventsub_subscription(
                    spec, callback=self.callback, secret=self._secret.reveal()
                )
            except HttpError as exc:
                if exc.status == 409:
                    conflicts = True
                    continue
                errors.append(f"{spec.type}: {exc}")
                continue
            with self.database.connection() as db:
                upsert_subscription(db, subscription, container_id=self.container_id)
            created += 1
        if conflicts:
            errors += self._sync(broadcaster_id)
        if errors:
            log.warning(
                "EventSub subscriptions for %s incomplete: %s", broadcaster_id, "; ".join(errors)
            )
        return {"created": created, "errors": errors}

    def _sync(self, broadcaster_id: str) -> list[str]:
        """Record subscriptions Twitch already has for this channel (after a 409)."""
        try:
            existing = self.helix.list_eventsub_subscriptions(user_id=broadcaster_id)
        except HttpError as exc:
            return [f"listing existing subscriptions: {exc}"]
        with self.database.connection() as db:
            for subscription in existing:
                if subscription.get("type") in CHANNEL_TYPES:
                    upsert_subscription(db, subscription)
        return []
