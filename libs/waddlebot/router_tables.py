"""The router's tables: commands, permissions, executions, responses, string rules,
coordination.

Defined here, in the shared package, because the portal reads and switches them too;
the router owns them (its ``models.py`` re-exports :func:`define_router_tables`).
"""

from pydal import Field

from .db import index, utcnow

#: store counter bumped whenever a ``community_rbac`` row changes (router API, portal):
#: every router process drops its cached role maps when it sees the counter move
ROLES_VERSION_KEY = "router:roles:version"


def define_router_tables(db) -> None:
    """Define the router's tables on ``db`` (idempotent)."""
    if "commands" in db.tables:
        return
    db.define_table(
        "commands",
        Field("command", "string", length=64, notnull=True),
        Field("prefix", "string", length=1, notnull=True),
        Field("description", "string", length=512),
        Field("location_url", "string", length=1024),
        Field("location", "string", length=16),
        Field("type", "string", length=16, notnull=True),
        Field("method", "string", length=8, default="POST"),
        Field("timeout", "integer", default=10),
        Field("headers", "json"),
        Field("auth_required", "boolean", default=False),
        Field("rate_limit", "integer"),
        Field("min_role", "string", length=16, default="member"),
        Field("is_active", "boolean", default=True),
        Field("module_type", "string", length=16, default="core"),
        Field("module_id", "reference collector_modules", ondelete="CASCADE"),
        Field("module_name", "string", length=128),
        Field("version", "string", length=64),
        Field("trigger_type", "string", length=16, default="command"),
        Field("event_types", "json"),
        Field("priority", "integer", default=100),
        Field("execution_mode", "string", length=16, default="sequential"),
        Field("usage_count", "bigint", default=0),
        Field("created_at", "datetime", default=utcnow),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    index(
        db,
        "commands",
        "commands_module_prefix_command",
        "module_name",
        "prefix",
        "command",
        unique=True,
    )
    index(db, "commands", "commands_lookup", "prefix", "command", "is_active")
    db.define_table(
        "command_permissions",
        Field("command_id", "reference commands", ondelete="CASCADE"),
        Field("entity_id", "string", length=512, notnull=True),
        Field("is_enabled", "boolean", default=True),
        Field("config", "json"),
        Field("permissions", "json"),
        Field("usage_count", "bigint", default=0),
        Field("last_used", "datetime"),
    )
    index(
        db,
        "command_permissions",
        "command_permissions_pair",
        "entity_id",
        "command_id",
        unique=True,
    )
    db.define_table(
        "command_executions",
        Field("execution_id", "string", length=64, notnull=True, unique=True),
        Field("session_id", "string", length=64),
        Field("command_id", "reference commands", ondelete="SET NULL"),
        Field("command", "string", length=80),
        Field("module_name", "string", length=128),
        Field("entity_id", "string", length=512),
        Field("user_id", "string", length=255),
        Field("message_content", "text"),
        Field("parameters", "json"),
        Field("location_url", "string", length=1024),
        Field("request_payload", "json"),
        Field("response_status", "integer"),
        Field("response_data", "json"),
        Field("execution_time_ms", "integer"),
        Field("error_message", "text"),
        Field("retry_count", "integer", default=0),
        Field("status", "string", length=16),
        Field("created_at", "datetime", default=utcnow),
    )
    index(db, "command_executions", "command_executions_entity_time", "entity_id", "created_at")
    db.define_table(
        "module_responses",
        Field("execution_id", "string", length=64),
        Field("session_id", "string", length=64),
        Field("entity_id", "string", length=512),
        Field("module_name", "string", length=128),
        Field("success", "boolean", default=True),
        Field("response_action", "string", length=16),
        Field("response_data", "json"),
        Field("media_type", "string", length=16),
        Field("media_url", "string", length=2048),
        Field("ticker_text", "text"),
        Field("ticker_duration", "integer"),
        Field("chat_message", "text"),
        Field("error_message", "text"),
        Field("processing_time_ms", "integer"),
        Field("delivery_status", "string", length=16),
        Field("delivery_attempts", "integer", default=0),
        Field("created_at", "datetime", default=utcnow),
    )
    index(db, "module_responses", "module_responses_execution", "execution_id")
    index(db, "module_responses", "module_responses_entity_time", "entity_id", "created_at")
    db.define_table(
        "stringmatch",
        Field("string", "string", length=1000, notnull=True),
        Field("match_type", "string", length=16, notnull=True),
        Field("case_sensitive", "boolean", default=False),
        Field("enabled_entity_ids", "json"),
        Field("action", "string", length=16, notnull=True),
        Field("command_to_execute", "string", length=80),
        Field("command_parameters", "json"),
        Field("webhook_url", "string", length=2048),
        Field("warning_message", "string", length=500),
        Field("block_message", "string", length=500),
        Field("priority", "integer", default=100),
        Field("is_active", "boolean", default=True),
        Field("match_count", "bigint", default=0),
        Field("last_matched", "datetime"),
        Field("created_by", "string", length=255),
        Field("created_at", "datetime", default=utcnow),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    index(db, "stringmatch", "stringmatch_active_priority", "is_active", "priority")
    db.define_table(
        "coordination",
        Field("platform", "string", length=32, notnull=True),
        Field("server_id", "string", length=255, notnull=True),
        Field("channel_id", "string", length=255, notnull=True),
        Field("entity_id", "string", length=512, notnull=True, unique=True),
        Field("claimed_by", "string", length=255),
        Field("claimed_at", "datetime"),
        Field("status", "string", length=16, default="available"),
        Field("is_live", "boolean", default=False),
        Field("live_since", "datetime"),
        Field("viewer_count", "integer", default=0),
        Field("last_activity", "datetime"),
        Field("last_check", "datetime"),
        Field("last_checkin", "datetime"),
        Field("claim_expires", "datetime"),
        Field("heartbeat_interval", "integer", default=300),
        Field("error_count", "integer", default=0),
        Field("last_error", "text"),
        Field("metadata", "json"),
        Field("priority", "integer", default=100),
        Field("max_containers", "integer", default=1),
        Field("config", "json"),
        Field("created_at", "datetime", default=utcnow),
        Field("updated_at", "datetime", default=utcnow, update=utcnow),
    )
    index(db, "coordination", "coordination_claimable", "platform", "claimed_by", "status")
    index(db, "coordination", "coordination_claimed_by", "claimed_by")
    # matches the claim order, so finding candidates is an index scan, not a sort
    index(
        db,
        "coordination",
        "coordination_claim_order",
        "platform",
        "is_live DESC",
        "priority",
        "viewer_count DESC",
        "id",
    )
