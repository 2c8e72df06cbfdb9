"""The portal's service API (``/api/portal/…``, service key): overlay keys and ``!community``.

``GET /api/portal/overlays?entity_id=…`` answers ``{"entity_id", "overlay_key", "url"}``
(the key is created on first request; ``waddlebot up`` prints the demo channel's URL
from it); ``POST /api/portal/overlays/rotate`` replaces it. The router calls
``POST /api/portal/commands/community`` for the ``!community`` command (DESIGN §8
payload) and posts the inline chat answer back to the channel.
"""

from __future__ import annotations

from py4web.core import request

from waddlebot.modules import CommandCall
from waddlebot.web import NotFound, ValidationError, endpoint, json_body

from .common import database, db, mailer, service_key, settings, store
from .services import community_command, overlays

API = dict(uses=(service_key, database))


def _entity_id(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("entity_id is required", field="entity_id")
    if db(db.entities.entity_id == value).isempty():
        raise NotFound(f"entity {value!r} is unknown", field="entity_id")
    return value


def _overlay(entity_id: str, key: str) -> dict:
    return {
        "entity_id": entity_id,
        "overlay_key": key,
        "url": overlays.overlay_url(settings.public_base_url, key),
    }


@endpoint("/api/portal/overlays", method="GET", **API)
def overlay_for_entity():
    """The entity's overlay key and OBS URL (created on first request)."""
    entity_id = _entity_id(request.query.get("entity_id"))
    return _overlay(entity_id, overlays.key_for_entity(db, entity_id))


@endpoint("/api/portal/overlays/rotate", method="POST", **API)
def rotate_overlay():
    """Replace the entity's overlay key; the old URL stops working."""
    entity_id = _entity_id(json_body().get("entity_id"))
    old, key = overlays.rotate_key(db, entity_id)
    db.commit()
    overlays.announce_rotation(store, entity_id, old)
    return _overlay(entity_id, key)


@endpoint("/api/portal/commands/community", method="POST", **API)
def community():
    """The ``!community`` command, answered inline with one chat line."""
    call = CommandCall.parse(json_body())
    reply = community_command.run(db, call=call, mailer=mailer, portal_url=settings.portal_url)
    return {"response_action": "chat", "chat_message": reply}
