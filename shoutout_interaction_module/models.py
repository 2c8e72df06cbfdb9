"""Shoutout tables: per-entity settings, per-user settings, and the shoutout history.

Pure definitions (no app imports) so ``waddlebot migrate`` can load them alone.
"""

from pydal import Field

from waddlebot.db import index, utcnow

AUTO_EVENTS = ("follow", "subscription", "raid")


def define_tables(db) -> None:
    """Define the shoutout app's tables on ``db``."""
    if "shoutout_settings" in db.tables:
        return
    db.define_table(
        "shoutout_settings",
        Field("entity_id", "string", length=512, notnull=True, unique=True),
        Field("auto_shoutout", "boolean", default=False),
        Field("events", "json"),
        Field("updated_by", "string", length=255),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    db.define_table(
        "shoutout_users",
        Field("entity_id", "string", length=512, notnull=True),
        Field("username", "string", length=64, notnull=True),
        Field("custom_message", "string", length=500),
        Field("links", "json"),
        Field("auto_shoutout", "boolean", default=True),
        Field("updated_by", "string", length=255),
        Field("created_at", "datetime", default=utcnow),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    index(db, "shoutout_users", "shoutout_users_entity_user", "entity_id", "username", unique=True)
    db.define_table(
        "shoutout_history",
        Field("entity_id", "string", length=512, notnull=True),
        Field("community_id", "integer"),
        Field("platform", "string", length=32),
        Field("target_login", "string", length=64, notnull=True),
        Field("target_user_id", "string", length=64),
        Field("target_display_name", "string", length=255),
        Field("game_name", "string", length=255),
        Field("trigger_type", "string", length=16, default="command"),
        Field("requested_by", "string", length=255),
        Field("media_type", "string", length=16),
        Field("media_url", "string", length=2048),
        Field("clip_id", "string", length=255),
        Field("twitch_shoutout", "string", length=32),
        Field("created_at", "datetime", default=utcnow),
    )
    index(db, "shoutout_history", "shoutout_history_entity_time", "entity_id", "created_at")
    index(db, "shoutout_history", "shoutout_history_entity_target", "entity_id", "target_login")
