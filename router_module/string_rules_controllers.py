"""HTTP surface of string rules (``/api/router/string-rules``): CRUD, thin handlers."""

from __future__ import annotations

from py4web.core import request

from waddlebot.web import NotFound, endpoint, json_body, page_of, page_params, set_status

from .common import database, db, moderation, service_key, settings
from .services.string_rules import COLUMNS, validate_rule

API = dict(uses=(service_key, database))
FIELDS = ("id", *COLUMNS, "match_count", "created_by")


def _view(row) -> dict:
    item = {f: row[f] for f in FIELDS}
    item["last_matched"] = row.last_matched.isoformat() if row.last_matched else None
    return item


def _rule(rule_id: int):
    row = db.stringmatch(rule_id)
    if row is None:
        raise NotFound(f"string rule {rule_id} does not exist", field="id")
    return row


@endpoint("/api/router/string-rules", **API)
def list_rules():
    """Rules, optionally only those applying to ``entity_id``; paginated by priority."""
    page, per_page = page_params()
    entity_id = request.query.get("entity_id")
    rows = db(db.stringmatch.is_active == True).select(  # noqa: E712
        orderby=db.stringmatch.priority | db.stringmatch.id
    )
    if request.query.get("include_inactive") in ("1", "true"):
        rows = db(db.stringmatch.id > 0).select(orderby=db.stringmatch.priority | db.stringmatch.id)
    if entity_id:
        rows = [
            r
            for r in rows
            if entity_id in (r.enabled_entity_ids or []) or "*" in (r.enabled_entity_ids or [])
        ]
    items = [_view(r) for r in rows]
    start = (page - 1) * per_page
    return page_of(items[start : start + per_page], page=page, per_page=per_page, total=len(items))


@endpoint("/api/router/string-rules", method="POST", **API)
def create_rule():
    """Create a rule (400 naming the field on bad input)."""
    values = validate_rule(json_body(), allow_private=settings.webhook_allow_private_networks)
    created_by = request.headers.get("X-Consumer-Username") or "api"
    rule_id = db.stringmatch.insert(**values, created_by=created_by)
    db.commit()
    moderation.invalidate()
    set_status(201)
    return _view(db.stringmatch(rule_id))


@endpoint("/api/router/string-rules/<rule_id:int>", **API)
def get_rule(rule_id):
    """One rule."""
    return _view(_rule(rule_id))


@endpoint("/api/router/string-rules/<rule_id:int>", method="PUT", **API)
def update_rule(rule_id):
    """Change a rule; fields not sent keep their values."""
    row = _rule(rule_id)
    merged = {f: row[f] for f in FIELDS if f not in ("id", "match_count", "created_by")}
    merged.update(json_body())
    values = validate_rule(merged, allow_private=settings.webhook_allow_private_networks)
    row.update_record(**values)
    db.commit()
    moderation.invalidate()
    return _view(db.stringmatch(rule_id))


@endpoint("/api/router/string-rules/<rule_id:int>", method="DELETE", **API)
def delete_rule(rule_id):
    """Deactivate a rule (kept for its statistics)."""
    row = _rule(rule_id)
    row.update_record(is_active=False)
    db.commit()
    moderation.invalidate()
    return _view(db.stringmatch(rule_id))
