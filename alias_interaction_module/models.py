"""Alias tables: one row per alias of a community, with its usage statistics.

Pure definitions (no app imports) so ``waddlebot migrate`` can load them alone.
"""

from pydal import Field

from waddlebot.db import index, utcnow


def define_tables(db) -> None:
    """Define the alias app's tables on ``db``."""
    if "command_aliases" in db.tables:
        return
    db.define_table(
        "command_aliases",
        Field("community_id", "reference communities", ondelete="CASCADE", notnull=True),
        Field("name", "string", length=64, notnull=True),
        Field("command", "string", length=512, notnull=True),
        Field("created_by", "string", length=255),
        Field("usage_count", "bigint", default=0),
        Field("last_used", "datetime"),
        Field("last_used_by", "string", length=255),
        Field("created_at", "datetime", default=utcnow),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    index(
        db,
        "command_aliases",
        "command_aliases_community_name",
        "community_id",
        "name",
        unique=True,
    )
    index(db, "command_aliases", "command_aliases_name", "name")
