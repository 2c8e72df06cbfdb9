"""HTTP surface of the router: events, catalogue, and the legacy core API.

Thin handlers: parse and validate, call a service, return JSON (DESIGN §8). Every
action here needs the service key; health is registered open by AppServices.
"""

from __future__ import annotations

from py4web.core import request

from waddlebot.contracts import PLATFORMS, Event
from waddlebot.web import (
    NotFound,
    ServiceUnavailable,
    ValidationError,
    endpoint,
    json_body,
    page_of,
    page_params,
    query_bool,
    set_status,
)

from .common import (
    batch_pool,
    catalog,
    database,
    db,
    delivery,
    directory,
    processor,
    service_key,
    settings,
)
from .services import coordination
from .services.registry import heartbeat, parse_registration, register_module
from .services.reputation import ALIASES, points_for

MAX_BATCH = 100
API = dict(uses=(service_key, database))


def _process_one(data) -> dict:
    return processor.process(Event.parse(data))


@endpoint("/api/router/events", method="POST", **API)
def events():
    """Process one event from a collector."""
    return _process_one(json_body())


@endpoint("/api/events", method="POST", **API)
def legacy_events():
    """Legacy path of ``/api/router/events``."""
    return _process_one(json_body())


def _batch_item(item) -> dict:
    if isinstance(item, ValidationError):
        return item.body()
    event, ticket = item
    try:
        with database.connection():
            return processor.run(event, ticket)
    except ServiceUnavailable as exc:  # no free slot: this item alone is to be retried
        return exc.body()


@endpoint("/api/router/events/batch", method="POST", **API)
def events_batch():
    """Up to 100 events processed concurrently; results in input order."""
    body = json_body()
    items = body.get("events")
    if not isinstance(items, list) or not items:
        raise ValidationError("events must be a non-empty list", field="events")
    if len(items) > MAX_BATCH:
        raise ValidationError(
            f"events has {len(items)} entries; at most {MAX_BATCH}", field="events"
        )
    parsed: list = []
    for data in items:
        try:
            parsed.append(Event.parse(data))
        except ValidationError as exc:
            parsed.append(exc)
    valid = [e for e in parsed if isinstance(e, Event)]
    admitted = iter(zip(valid, processor.admit(valid), strict=True))
    work = [e if isinstance(e, ValidationError) else next(admitted) for e in parsed]
    return {"results": list(batch_pool.map(_batch_item, work))}


@endpoint("/api/router/commands", **API)
def list_commands():
    """Registered commands, filtered by prefix, location, type, module, active."""
    page, per_page = page_params()
    filters = {"prefix": "prefix", "location": "location", "type": "type", "module": "module_name"}
    wanted = {column: request.query.get(name) for name, column in filters.items()}
    active = query_bool("active")

    def where(d):
        # built on the DAL that runs it (replica or primary): mixing DALs breaks pydal
        query = d.commands.id > 0
        for column, value in wanted.items():
            if value:
                query &= d.commands[column] == value
        if active is not None:
            query &= d.commands.is_active == active
        return query

    fields = (
        "id",
        "command",
        "prefix",
        "description",
        "location",
        "type",
        "location_url",
        "method",
        "timeout",
        "rate_limit",
        "min_role",
        "is_active",
        "module_name",
        "module_type",
        "trigger_type",
        "event_types",
        "priority",
        "execution_mode",
        "usage_count",
    )

    def fetch(d):
        query = where(d)
        total = d(query).count()
        rows = d(query).select(
            orderby=d.commands.prefix | d.commands.command,
            limitby=((page - 1) * per_page, page * per_page),
        )
        return total, [{f: r[f] for f in fields} for r in rows]

    total, items = database.read(fetch)
    return page_of(items, page=page, per_page=per_page, total=total)


@endpoint("/api/router/entities", **API)
def list_entities():
    """Known entities (platform filter, paginated)."""
    page, per_page = page_params()
    platform = request.query.get("platform")
    active = query_bool("active")

    def fetch(d):
        query = d.entities.id > 0
        if platform:
            query &= d.entities.platform == platform
        if active is not None:
            query &= d.entities.is_active == active
        total = d(query).count()
        rows = d(query).select(
            orderby=d.entities.id, limitby=((page - 1) * per_page, page * per_page)
        )
        return total, [
            {
                "entity_id": r.entity_id,
                "platform": r.platform,
                "server_id": r.server_id,
                "channel_id": r.channel_id,
                "owner": r.owner,
                "community_id": r.community_id,
                "is_active": r.is_active,
            }
            for r in rows
        ]

    total, items = database.read(fetch)
    return page_of(items, page=page, per_page=per_page, total=total)


@endpoint("/api/modules/register", method="POST", **API)
def modules_register():
    """Register (or re-register) a module or collector with its commands."""
    registration = parse_registration(
        json_body(), allow_private=settings.webhook_allow_private_networks
    )
    result = register_module(db, registration)
    db.commit()
    catalog.invalidate()
    delivery.forget_endpoints()
    if result["created"]:
        set_status(201)
    return result


@endpoint("/api/modules/heartbeat", method="POST", **API)
def modules_heartbeat():
    """A module says it is alive."""
    body = json_body()
    name = body.get("module_name")
    if not isinstance(name, str) or not name:
        raise ValidationError("module_name is required", field="module_name")
    status = body.get("status", "active")
    if status not in ("active", "degraded", "inactive"):
        raise ValidationError("status must be active, degraded or inactive", field="status")
    return heartbeat(db, name, status)


@endpoint("/api/servers", **API)
def servers():
    """Monitored servers/channels, e.g. ``?platform=twitch&active=true``."""
    platform = request.query.get("platform")
    if platform and platform not in PLATFORMS:
        raise ValidationError(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    active = query_bool("active")
    page, per_page = page_params()

    def fetch(d):
        query = d.servers.id > 0
        if platform:
            query &= d.servers.platform == platform
        if active is not None:
            query &= d.servers.is_active == active
        total = d(query).count()
        rows = d(query).select(
            orderby=d.servers.id, limitby=((page - 1) * per_page, page * per_page)
        )
        return total, [
            {
                "id": r.id,
                "platform": r.platform,
                "server_id": r.server_id,
                "channel": r.channel,
                "owner": r.owner,
                "is_active": r.is_active,
                "config": r.config or {},
            }
            for r in rows
        ]

    total, items = database.read(fetch)
    return page_of(items, page=page, per_page=per_page, total=total)


def _text(body: dict, name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ValidationError(f"{name} must be a non-empty string", field=name)
    return value


@endpoint("/api/context", method="POST", **API)
def context():
    """Platform identity → bot user (created on first sight) and its identities."""
    body = json_body()
    platform = _text(body, "platform")
    if platform not in PLATFORMS:
        raise ValidationError(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    return directory.context(platform, _text(body, "user_id"), _text(body, "user_name"))


def _reputation_target(entity_id: str, user_id: str, user_name: str | None = None):
    entity = directory.find_entity(entity_id)
    if entity is None:
        raise NotFound(f"entity {entity_id!r} is unknown", field="entity_id")
    bot_id = directory.user_id(entity.platform, user_id, user_name or user_id)
    return entity, bot_id


@endpoint("/api/reputation", method="POST", **API)
def reputation_add():
    """Activity points for a user in an entity's community."""
    body = json_body()
    entity, bot_id = _reputation_target(
        _text(body, "entity_id"), _text(body, "user_id"), _text(body, "user_name", required=False)
    )
    activity = _text(body, "activity_type")
    metadata = {}
    if "amount" in body:
        metadata["amount"] = body["amount"]
        metadata["duration_s"] = body["amount"]
    known = set(ALIASES) | {
        "follow",
        "subscription",
        "resub",
        "cheer",
        "raid",
        "subgift",
        "ban",
        "donation",
        "chatMessage",
        "reaction",
        "member_join",
        "voice_join",
        "voice_time",
        "boost",
        "file_share",
        "app_mention",
    }
    if activity not in known:
        raise ValidationError(f"activity_type {activity!r} is unknown", field="activity_type")
    points = points_for(entity.platform, activity, metadata)
    total = (
        directory.add_reputation(entity.community_id, bot_id, points)
        if points
        else (directory.reputation(entity.community_id, bot_id))
    )
    return {
        "entity_id": entity.entity_id,
        "community_id": entity.community_id,
        "user_id": bot_id,
        "awarded": points,
        "points": total,
    }


@endpoint("/api/reputation", method="GET", **API)
def reputation_get():
    """A user's points in an entity's community."""
    entity_id = request.query.get("entity_id") or ""
    user_id = request.query.get("user_id") or ""
    if not entity_id:
        raise ValidationError("entity_id is required", field="entity_id")
    if not user_id:
        raise ValidationError("user_id is required", field="user_id")
    entity, bot_id = _reputation_target(entity_id, user_id)
    user = db.users[bot_id]
    return {
        "points": directory.reputation(entity.community_id, bot_id),
        "user": {
            "id": bot_id,
            "display_name": user.display_name if user else user_id,
            "platform_user_id": user_id,
        },
        "community_id": entity.community_id,
    }


@endpoint("/api/gateway/activate", method="POST", **API)
def gateway_activate():
    """Turn monitoring on for a server/channel: server row, entity, community."""
    body = json_body()
    platform = _text(body, "platform")
    if platform not in PLATFORMS:
        raise ValidationError(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise ValidationError("config must be an object", field="config")
    info = directory.activate(
        platform,
        _text(body, "server_id"),
        _text(body, "channel_id"),
        owner_user_id=_text(body, "owner_user_id", required=False),
        config=config,
    )
    coordination.ensure_entity(
        db, platform=platform, server_id=info.server_id, channel_id=info.channel_id
    )
    return {"entity_id": info.entity_id, "community_id": info.community_id, "is_active": True}


__all__ = ["delivery"]
