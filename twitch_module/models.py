"""Tables of the twitch collector: tokens, EventSub subscriptions, events, activities.

Pure definitions (pydal and waddlebot only) so ``waddlebot migrate`` can load them alone.

* ``twitch_tokens`` - one row per Twitch user who connected (broadcasters, the bot);
  tokens encrypted at rest.
* ``twitch_subscriptions`` - EventSub subscriptions the collector created, their status
  and why Twitch revoked them.
* ``twitch_events`` - every notification as received (the raw payload) and its way to
  the router: ``forwarded`` once the router accepted it, otherwise retried from here.
* ``twitch_activities`` - reputation-bearing activities (follow, sub, bits ...) with the
  points the router awarded.
"""

from pydal import Field

from waddlebot.db import index, utcnow

#: what became of a stored notification
EVENT_STATUSES = ("pending", "forwarded", "rejected", "ignored")


def define_tables(db) -> None:
    """Define the twitch collector's tables on ``db``."""
    if "twitch_events" in db.tables:
        return
    now = utcnow
    db.define_table(
        "twitch_tokens",
        Field("user_id", "string", length=64, notnull=True),
        Field("login", "string", length=64),
        Field("display_name", "string", length=255),
        Field("access_token", "text"),
        Field("refresh_token", "text"),
        Field("scopes", "json"),
        Field("token_type", "string", length=32, default="bearer"),
        Field("expires_at", "double"),
        Field("status", "string", length=16, default="active"),
        Field("created_at", "datetime", default=now),
        Field("updated_at", "datetime", default=now, update=now),
    )
    index(db, "twitch_tokens", "twitch_tokens_user", "user_id", unique=True)
    db.define_table(
        "twitch_subscriptions",
        Field("subscription_id", "string", length=64),
        Field("subscription_type", "string", length=64, notnull=True),
        Field("version", "string", length=8),
        Field("broadcaster_user_id", "string", length=64),
        Field("condition", "json"),
        Field("status", "string", length=64, notnull=True),
        Field("revoked_reason", "string", length=255),
        Field("revoked_at", "datetime"),
        Field("container_id", "string", length=255),
        Field("created_at", "datetime", default=now),
        Field("updated_at", "datetime", default=now, update=now),
    )
    index(db, "twitch_subscriptions", "twitch_subscriptions_sid", "subscription_id", unique=True)
    index(
        db,
        "twitch_subscriptions",
        "twitch_subscriptions_channel",
        "broadcaster_user_id",
        "subscription_type",
    )
    db.define_table(
        "twitch_events",
        Field("message_id", "string", length=128, notnull=True),
        Field("subscription_id", "string", length=64),
        Field("subscription_type", "string", length=64, notnull=True),
        Field("subscription_version", "string", length=8),
        Field("broadcaster_user_id", "string", length=64),
        Field("payload", "json"),
        Field("message_timestamp", "datetime"),
        Field("received_at", "datetime", default=now),
        Field("status", "string", length=16, default="pending"),
        Field("forwarded", "boolean", default=False),
        Field("forward_attempts", "integer", default=0),
        Field("next_attempt_at", "datetime"),
        Field("lease_token", "string", length=32),
        Field("last_error", "string", length=1024),
        Field("processed_at", "datetime"),
    )
    index(db, "twitch_events", "twitch_events_message", "message_id", unique=True)
    # the forwarder's scan: not yet forwarded, due now, oldest first
    index(db, "twitch_events", "twitch_events_due", "forwarded", "next_attempt_at", "id")
    index(db, "twitch_events", "twitch_events_channel", "broadcaster_user_id", "id")
    index(db, "twitch_events", "twitch_events_lease", "lease_token")
    db.define_table(
        "twitch_activities",
        Field("event_id", "string", length=128, notnull=True),
        Field("message_id", "string", length=128),
        Field("activity_type", "string", length=32, notnull=True),
        Field("broadcaster_user_id", "string", length=64),
        Field("user_id", "string", length=64),
        Field("user_name", "string", length=255),
        Field("amount", "integer", default=0),
        Field("points", "integer", default=0),
        Field("context_sent", "boolean", default=False),
        Field("created_at", "datetime", default=now),
    )
    index(db, "twitch_activities", "twitch_activities_event", "event_id", unique=True)
    index(
        db,
        "twitch_activities",
        "twitch_activities_channel_user",
        "broadcaster_user_id",
        "user_id",
    )
