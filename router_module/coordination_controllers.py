"""HTTP surface of coordination (``/api/router/coordination/…``): thin handlers."""

from __future__ import annotations

from py4web.core import request

from waddlebot.web import ValidationError, endpoint, json_body, page_of, page_params

from .common import database, db, service_key
from .services import coordination

API = dict(uses=(service_key, database))
PREFIX = "/api/router/coordination"


def _max_claims(body: dict) -> int:
    value = body.get("max_claims", coordination.DEFAULT_MAX_CLAIMS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValidationError("max_claims must be an integer between 1 and 100", field="max_claims")
    return value


def _entity_id(body: dict) -> str:
    value = body.get("entity_id")
    if not isinstance(value, str) or not value:
        raise ValidationError("entity_id is required", field="entity_id")
    return value


@endpoint(f"{PREFIX}/claim", method="POST", **API)
def claim():
    """Claim entities for a container, up to max_claims."""
    body = json_body()
    claimed = coordination.claim(
        db,
        platform=coordination.validate_platform(body.get("platform")),
        container_id=coordination.validate_container(body.get("container_id")),
        max_claims=_max_claims(body),
    )
    return {"claimed": claimed}


@endpoint(f"{PREFIX}/release", method="POST", **API)
def release():
    """Release some (entity_ids) or all claims of a container."""
    body = json_body()
    entity_ids = body.get("entity_ids")
    if entity_ids is not None and (
        not isinstance(entity_ids, list) or not all(isinstance(e, str) for e in entity_ids)
    ):
        raise ValidationError("entity_ids must be a list of strings", field="entity_ids")
    released = coordination.release(
        db,
        container_id=coordination.validate_container(body.get("container_id")),
        entity_ids=entity_ids,
    )
    return {"released": released}


@endpoint(f"{PREFIX}/checkin", method="POST", **API)
def checkin():
    """The container's 5-minute check-in."""
    body = json_body()
    return coordination.checkin(
        db, container_id=coordination.validate_container(body.get("container_id"))
    )


@endpoint(f"{PREFIX}/heartbeat", method="POST", **API)
def heartbeat():
    """Extend a container's claims."""
    body = json_body()
    return coordination.heartbeat(
        db, container_id=coordination.validate_container(body.get("container_id"))
    )


@endpoint(f"{PREFIX}/status", method="POST", **API)
def status():
    """Live status / viewer count of an entity."""
    body = json_body()
    is_live = body.get("is_live")
    if is_live is not None and not isinstance(is_live, bool):
        raise ValidationError("is_live must be true or false", field="is_live")
    viewers = body.get("viewer_count")
    if viewers is not None and (
        isinstance(viewers, bool) or not isinstance(viewers, int) or viewers < 0
    ):
        raise ValidationError("viewer_count must be a non-negative integer", field="viewer_count")
    return coordination.update_status(
        db, entity_id=_entity_id(body), is_live=is_live, viewer_count=viewers
    )


@endpoint(f"{PREFIX}/error", method="POST", **API)
def error():
    """Count an error for an entity."""
    body = json_body()
    message = body.get("error")
    if not isinstance(message, str) or not message:
        raise ValidationError("error is required", field="error")
    return coordination.report_error(
        db, entity_id=_entity_id(body), container_id=body.get("container_id"), error=message
    )


@endpoint(f"{PREFIX}/release-offline", method="POST", **API)
def release_offline():
    """Release offline entities and claim new ones."""
    body = json_body()
    return coordination.release_offline(
        db,
        container_id=coordination.validate_container(body.get("container_id")),
        platform=coordination.validate_platform(body.get("platform")),
        max_claims=_max_claims(body),
    )


@endpoint(f"{PREFIX}/stats", **API)
def stats():
    """Coordination statistics."""
    return coordination.stats(db)


@endpoint(f"{PREFIX}/entities", **API)
def entities():
    """Coordinated entities, filtered by platform, status, claimed_by."""
    page, per_page = page_params()
    table = db.coordination
    query = table.id > 0
    for name in ("platform", "status", "claimed_by"):
        value = request.query.get(name)
        if value:
            query &= table[name] == value
    total = db(query).count()
    rows = db(query).select(orderby=table.id, limitby=((page - 1) * per_page, page * per_page))
    return page_of(
        [coordination.claim_view(r) for r in rows], page=page, per_page=per_page, total=total
    )


@endpoint(f"{PREFIX}/populate", method="POST", **API)
def populate():
    """Fill the coordination table from the servers table."""
    body = json_body(required=False)
    platform = body.get("platform")
    if platform is not None:
        coordination.validate_platform(platform)
    return coordination.populate(db, platform=platform)
