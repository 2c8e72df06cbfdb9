"""OBS overlay pages (public, addressed by an unguessable per-entity key).

``GET /overlay/<key>`` is a transparent 1920×1080 page (``?only=media|ticker|form``
shows one kind) that listens to ``GET /overlay/<key>/events``, a server-sent event
stream of the entity's media, ticker and form responses. A wrong key is a plain 404
that does not say why. The stream holds no database connection: the key is resolved
first, then only the store is read.
"""

from __future__ import annotations

from py4web.core import HTTP, action, request, response

from .common import database, db, settings, store
from .services import overlays


def _entity_or_404(overlay_key: str) -> str:
    entity_id = overlays.entity_for_key(db, overlay_key)
    if entity_id is None:
        raise HTTP(404, "Not found", headers={"Content-Type": "text/plain; charset=utf-8"})
    return entity_id


def _only() -> str | None:
    only = request.query.get("only") or None
    if only is not None and only not in overlays.OVERLAY_KINDS:
        raise HTTP(
            400,
            "only must be media, ticker or form",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    return only


@action("/overlay/<overlay_key>", method=["GET"])
@action.uses("overlay.html", database)
def overlay_page(overlay_key):
    """The browser source page of an entity's overlay."""
    _entity_or_404(overlay_key)
    only = _only()
    response.headers["Cache-Control"] = "no-store"
    # the key is in the URL: never send it on to embedded players (Twitch clips)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    events = f"/overlay/{overlay_key}/events" + (f"?only={only}" if only else "")
    return dict(events_url=events, only=only or "")


@action("/overlay/<overlay_key>/events", method=["GET"])
@action.uses(database)
def overlay_events(overlay_key):
    """Server-sent events of the overlay (replay after ``Last-Event-ID``, then live)."""
    entity_id = _entity_or_404(overlay_key)
    only = _only()
    last = overlays.parse_event_id(
        request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    )
    response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Referrer-Policy"] = "no-referrer"
    return overlays.event_stream(
        store,
        entity_id=entity_id,
        key=overlay_key,
        last_event_id=last,
        only=only,
        retry_ms=settings.overlay_retry_ms,
        heartbeat=settings.overlay_heartbeat_seconds,
        max_seconds=settings.overlay_stream_seconds,
    )
