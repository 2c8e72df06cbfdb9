"""HTTP surface of the shoutout app: the router's calls and the portal's management API.

* ``POST /api/shoutout/so`` - the router's call for ``!so`` / ``!shoutout``;
* ``POST /api/shoutout/auto`` - the router's call for follow/subscription/raid events;
* ``GET|PUT /api/shoutout/settings/<entity_id>`` - automatic shoutouts of a channel;
* ``GET /api/shoutout/users?entity_id=`` and ``GET|PUT|DELETE
  /api/shoutout/users/<name>?entity_id=`` - per-user message, links, automatic switch;
* ``GET /api/shoutout/history?entity_id=`` - shoutouts given and counts per user.

``/api/shoutout/health`` (open) and ``/api/shoutout/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from __future__ import annotations

from py4web.core import request

from waddlebot.modules import CommandCall
from waddlebot.web import (
    NotFound,
    ValidationError,
    endpoint,
    json_body,
    page_of,
    page_params,
    set_status,
)

from .common import database, service_key, shoutouts
from .services.messages import MAX_CUSTOM_MESSAGE, MAX_NAME, target_name, validate_links
from .services.shoutouts import AUTO_EVENTS

API = dict(uses=(service_key, database))


@endpoint("/api/shoutout/so", method="POST", **API)
def shoutout():
    """The router's call for ``!so <user>`` / ``!shoutout <user>``."""
    return shoutouts.command(CommandCall.parse(json_body()))


@endpoint("/api/shoutout/auto", method="POST", **API)
def auto_shoutout():
    """The router's call for a follow, subscription or raid."""
    return shoutouts.auto(CommandCall.parse(json_body()))


def _entity(entity_id: str | None) -> str:
    if not entity_id:
        raise ValidationError("entity_id is required", field="entity_id")
    if not shoutouts.entity_exists(entity_id):
        raise NotFound(f"entity {entity_id!r} is unknown", field="entity_id")
    return entity_id


def _updated_by(body: dict) -> str | None:
    value = body.get("updated_by")
    if value is not None and (not isinstance(value, str) or len(value) > 255):
        raise ValidationError(
            "updated_by must be a string of at most 255 characters", field="updated_by"
        )
    return value


@endpoint("/api/shoutout/settings/<entity_id>", method="GET", **API)
def get_settings(entity_id):
    """Whether a channel gives automatic shoutouts, and on which events."""
    return shoutouts.entity_settings(_entity(entity_id))


@endpoint("/api/shoutout/settings/<entity_id>", method="PUT", **API)
def put_settings(entity_id):
    """Switch automatic shoutouts: ``{"auto_shoutout": true, "events": ["raid"]}``."""
    entity_id = _entity(entity_id)
    body = json_body()
    auto = body.get("auto_shoutout")
    if auto is not None and not isinstance(auto, bool):
        raise ValidationError("auto_shoutout must be true or false", field="auto_shoutout")
    events = body.get("events")
    if events is not None:
        if not isinstance(events, list) or not all(e in AUTO_EVENTS for e in events):
            raise ValidationError(
                f"events must be a list of: {', '.join(AUTO_EVENTS)}", field="events"
            )
        events = [e for e in AUTO_EVENTS if e in events]
    return shoutouts.save_entity_settings(
        entity_id, auto_shoutout=auto, events=events, updated_by=_updated_by(body)
    )


def _username(raw: str) -> str:
    name = target_name(raw)
    if not name or len(name) > MAX_NAME:
        raise ValidationError(f"name must be 1-{MAX_NAME} characters", field="name")
    return name


@endpoint("/api/shoutout/users", method="GET", **API)
def list_users():
    """Users with shoutout settings in a channel (``?entity_id=``)."""
    entity_id = _entity(request.query.get("entity_id"))
    page, per_page = page_params()
    total, items = shoutouts.list_user_settings(entity_id, page=page, per_page=per_page)
    return page_of(items, page=page, per_page=per_page, total=total)


@endpoint("/api/shoutout/users/<name>", method="GET", **API)
def get_user(name):
    """One user's shoutout settings in a channel."""
    entity_id = _entity(request.query.get("entity_id"))
    found = shoutouts.user_settings(entity_id, _username(name))
    if found is None:
        raise NotFound(f"no shoutout settings for {name!r}", field="name")
    return found


@endpoint("/api/shoutout/users/<name>", method="PUT", **API)
def put_user(name):
    """Set ``custom_message``, ``links`` and ``auto_shoutout`` for a user in a channel."""
    entity_id = _entity(request.query.get("entity_id"))
    name = _username(name)
    body = json_body()
    values = {"updated_by": _updated_by(body)}
    if "custom_message" in body:
        message = body["custom_message"]
        if message is not None and (
            not isinstance(message, str) or len(message) > MAX_CUSTOM_MESSAGE
        ):
            raise ValidationError(
                f"custom_message must be text of at most {MAX_CUSTOM_MESSAGE} characters",
                field="custom_message",
            )
        values["custom_message"] = (message or "").strip() or None
    if "links" in body:
        try:
            values["links"] = validate_links(body["links"])
        except ValueError as exc:
            raise ValidationError(str(exc), field="links") from None
    if "auto_shoutout" in body:
        if not isinstance(body["auto_shoutout"], bool):
            raise ValidationError("auto_shoutout must be true or false", field="auto_shoutout")
        values["auto_shoutout"] = body["auto_shoutout"]
    saved, created = shoutouts.save_user_settings(entity_id, name, values)
    set_status(201 if created else 200)
    return saved


@endpoint("/api/shoutout/users/<name>", method="DELETE", **API)
def delete_user(name):
    """Forget a user's shoutout settings in a channel."""
    entity_id = _entity(request.query.get("entity_id"))
    if not shoutouts.delete_user_settings(entity_id, _username(name)):
        raise NotFound(f"no shoutout settings for {name!r}", field="name")
    return {"deleted": True, "entity_id": entity_id, "username": _username(name).lower()}


@endpoint("/api/shoutout/history", method="GET", **API)
def history():
    """Shoutouts given in a channel (``?entity_id=``, ``?target=``) and counts per user."""
    entity_id = _entity(request.query.get("entity_id"))
    page, per_page = page_params()
    found = shoutouts.history(
        entity_id, page=page, per_page=per_page, target=request.query.get("target")
    )
    answer = page_of(found["items"], page=page, per_page=per_page, total=found["total"])
    answer["counts"] = found["counts"]
    return answer
