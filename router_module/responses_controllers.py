"""HTTP surface of module responses (``/api/router/responses…``).

A module that answers later posts here with the session id it was called with; the
router checks that the session is alive and belongs to the entity of the execution,
records the response and delivers it (DESIGN §5).
"""

from __future__ import annotations

import datetime

from py4web.core import request

from waddlebot.contracts import RESPONSE_ACTIONS, ModuleResponse
from waddlebot.web import (
    ApiError,
    NotFound,
    ValidationError,
    endpoint,
    json_body,
    page_of,
    page_params,
    set_status,
)

from .common import database, db, delivery, directory, service_key, settings, store

API = dict(uses=(service_key, database))
FIELDS = (
    "id",
    "execution_id",
    "session_id",
    "entity_id",
    "module_name",
    "success",
    "response_action",
    "media_type",
    "media_url",
    "ticker_text",
    "ticker_duration",
    "chat_message",
    "error_message",
    "processing_time_ms",
    "delivery_status",
    "delivery_attempts",
)


def _view(row) -> dict:
    item = {f: row[f] for f in FIELDS}
    item["response_data"] = row.response_data or {}
    item["created_at"] = row.created_at.isoformat() if row.created_at else None
    return item


def _session_entity(session_id: str) -> str:
    entity_id = store.get(f"{settings.session_prefix}{session_id}")
    if entity_id is not None:
        return entity_id
    known = (
        db(db.command_executions.session_id == session_id)
        .select(db.command_executions.id, limitby=(0, 1))
        .first()
    )
    if known is not None:
        raise ApiError(
            "session_id has expired", field="session_id", status=410, code="session_expired"
        )
    raise NotFound("session_id is unknown", field="session_id")


@endpoint("/api/router/responses", method="POST", **API)
def submit_response():
    """A module's response for an execution, validated against its session."""
    body = json_body()
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise ValidationError("session_id is required", field="session_id")
    response = ModuleResponse.parse(body)
    entity_id = _session_entity(session_id)
    claimed_entity = body.get("entity_id")
    if claimed_entity is not None and claimed_entity != entity_id:
        raise ApiError(
            "session_id does not belong to this entity",
            field="entity_id",
            status=403,
            code="session_mismatch",
        )
    execution_id = body.get("execution_id")
    if execution_id is not None:
        if not isinstance(execution_id, str):
            raise ValidationError("execution_id must be a string", field="execution_id")
        execution = db(db.command_executions.execution_id == execution_id).select().first()
        if execution is None:
            raise NotFound("execution_id is unknown", field="execution_id")
        if execution.entity_id != entity_id or (
            execution.session_id and execution.session_id != session_id
        ):
            raise ApiError(
                "session_id does not belong to the entity of this execution",
                field="session_id",
                status=403,
                code="session_mismatch",
            )
    entity = directory.find_entity(entity_id)
    if entity is None:
        raise NotFound("the session's entity no longer exists", field="session_id")
    context = {
        "execution_id": execution_id,
        "session_id": session_id,
        "entity_id": entity_id,
        "platform": entity.platform,
        "server_id": entity.server_id,
        "channel_id": entity.channel_id,
        "user_id": body.get("user_id") if isinstance(body.get("user_id"), str) else None,
    }
    delivery.dispatch(db, response, context=context)
    set_status(202)
    return {"accepted": True, "entity_id": entity_id, "response_action": response.response_action}


@endpoint("/api/router/responses/recent", **API)
def recent_responses():
    """Recent responses, filtered by entity_id, module_name, response_action, since."""
    page, per_page = page_params()
    # the query is built in fetch() on the DAL that runs it (the replica's tables are
    # not the primary's: mixing them fails with "Name conflict in table list")
    equal: dict = {}
    for name in ("entity_id", "module_name"):
        value = request.query.get(name)
        if value:
            equal[name] = value
    action = request.query.get("response_action")
    if action:
        if action not in RESPONSE_ACTIONS:
            raise ValidationError(
                f"response_action must be one of {', '.join(RESPONSE_ACTIONS)}",
                field="response_action",
            )
        equal["response_action"] = action
    moment = None
    since = request.query.get("since")
    if since:
        try:
            moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("since must be an ISO 8601 time", field="since") from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)

    def fetch(d):
        table = d.module_responses
        query = table.id > 0
        for name, value in equal.items():
            query &= table[name] == value
        if moment is not None:
            query &= table.created_at >= moment
        total = d(query).count()
        rows = d(query).select(orderby=~table.id, limitby=((page - 1) * per_page, page * per_page))
        return total, [_view(r) for r in rows]

    total, items = database.read(fetch)
    return page_of(items, page=page, per_page=per_page, total=total)


@endpoint("/api/router/responses/<execution_id>", **API)
def responses_for_execution(execution_id):
    """Every response recorded for one execution."""
    rows = db(db.module_responses.execution_id == execution_id).select(
        orderby=db.module_responses.id
    )
    if not rows and db(db.command_executions.execution_id == execution_id).isempty():
        raise NotFound("execution_id is unknown", field="execution_id")
    return {"execution_id": execution_id, "items": [_view(r) for r in rows]}
