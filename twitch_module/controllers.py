"""HTTP surface of the twitch app.

Public (Twitch and browsers, no API key):

* ``POST /webhooks/twitch/eventsub`` - EventSub webhook (signature-checked).
* ``GET /webhooks/twitch/auth/login`` and ``/webhooks/twitch/auth/callback`` - OAuth.

Service key:

* ``POST /api/twitch/responses`` - chat replies and moderation pushed by the router.
* ``GET /api/twitch/events``, ``/subscriptions``, ``/activities``, ``/channels``,
  ``/status`` - what the collector stored and how it is doing.

``/api/twitch/health`` (open) and ``/api/twitch/metrics`` (service key) are registered
by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from __future__ import annotations

import html
import time

from py4web.core import HTTP, request, response

from waddlebot.web import (
    MAX_BODY_BYTES,
    ApiError,
    ServiceUnavailable,
    endpoint,
    json_body,
    page_of,
    page_params,
    query_bool,
    set_status,
)

from .common import (
    TwitchMetrics,
    chat,
    database,
    db,
    forwarder,
    lifecycle,
    moderator,
    oauth_flow,
    receiver,
    service_key,
    settings,
    tokens,
)
from .services.replies import parse_reply

API = dict(uses=(service_key, database))


def _not_configured(*names: str) -> ServiceUnavailable:
    missing = [n for n in names if n]
    return ServiceUnavailable(f"{', '.join(missing)} is not configured", retry_after=60)


# -- EventSub ---------------------------------------------------------------------------


@endpoint("/webhooks/twitch/eventsub", method="POST")
def eventsub_webhook():
    """Twitch EventSub: challenge, revocation or notification (stored before the 2xx)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        raw = request.body.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError("request body too large", field="body", status=413, code="too_large")
        receipt = receiver.receive(request.headers, raw)
        outcome = receipt.outcome
    except ApiError as exc:
        outcome = exc.code
        raise
    finally:
        TwitchMetrics.webhooks.labels(outcome).inc()
        TwitchMetrics.webhook_latency.observe(time.perf_counter() - started)
    response.status = receipt.status
    if receipt.text:
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
        return receipt.text
    return ""


# -- OAuth ------------------------------------------------------------------------------


def _flow():
    if oauth_flow is None:
        raise _not_configured(settings.missing_for_twitch() or "TWITCH_APP_ID")
    return oauth_flow


@endpoint("/webhooks/twitch/auth/login", method="GET")
def auth_login():
    """Send the streamer to Twitch to connect their channel."""
    raise HTTP(302, "", headers={"Location": _flow().login_url()})


@endpoint("/webhooks/twitch/auth/callback", method="GET")
def auth_callback():
    """Twitch sends the streamer back here with a code (or an error) and our state."""
    connected = _flow().complete(
        state=request.query.get("state"),
        code=request.query.get("code"),
        error=request.query.get("error"),
        error_description=request.query.get("error_description"),
    )
    accept = request.headers.get("Accept") or ""
    if "text/html" in accept:
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        name = html.escape(connected.display_name)
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>WaddleBot</title></head>"
            f"<body><h1>Connected</h1><p>{name} is connected to WaddleBot. "
            "You can close this page.</p></body></html>"
        )
    return connected.to_dict()


# -- replies from the router --------------------------------------------------------------


@endpoint("/api/twitch/responses", method="POST", uses=(service_key,))
def responses():
    """A chat reply or moderation action from the router; queued, answered 202."""
    reply = parse_reply(json_body())
    if reply.chat_message and chat is None:
        raise _not_configured(settings.missing_for_twitch() or "TWITCH_BOT_USER_ID")
    if reply.moderation_action == "delete" and moderator is None:
        raise _not_configured(settings.missing_for_twitch() or "TWITCH_APP_ID")
    queued = chat.enqueue(reply.broadcaster_id, reply.chat_message) if reply.chat_message else 0
    if reply.moderation_action == "delete":
        moderator.delete_later(reply.broadcaster_id, reply.message_id)
    set_status(202)
    return {
        "status": "accepted",
        "queued_messages": queued,
        "moderation": reply.moderation_action,
    }


# -- what the collector stored ----------------------------------------------------------


def _iso(value):
    return value.isoformat() if value is not None else None


def _page(query, orderby, render):
    page, per_page = page_params()
    total = db(query).count()
    rows = db(query).select(orderby=orderby, limitby=((page - 1) * per_page, page * per_page))
    return page_of([render(r) for r in rows], page=page, per_page=per_page, total=total)


@endpoint("/api/twitch/events", **API)
def list_events():
    """Stored notifications, newest first (filters: status, forwarded, type, channel)."""
    table = db.twitch_events
    query = table.id > 0
    for name, field in (
        ("status", table.status),
        ("subscription_type", table.subscription_type),
        ("broadcaster_user_id", table.broadcaster_user_id),
    ):
        value = request.query.get(name)
        if value:
            query &= field == value
    forwarded = query_bool("forwarded")
    if forwarded is not None:
        query &= table.forwarded == forwarded
    with_payload = bool(query_bool("include_payload"))

    def render(r):
        item = {
            "id": r.id,
            "message_id": r.message_id,
            "subscription_type": r.subscription_type,
            "broadcaster_user_id": r.broadcaster_user_id,
            "status": r.status,
            "forwarded": bool(r.forwarded),
            "forward_attempts": r.forward_attempts,
            "next_attempt_at": _iso(r.next_attempt_at),
            "last_error": r.last_error,
            "received_at": _iso(r.received_at),
            "processed_at": _iso(r.processed_at),
        }
        if with_payload:
            item["payload"] = r.payload
        return item

    return _page(query, ~table.id, render)


@endpoint("/api/twitch/subscriptions", **API)
def list_subscriptions():
    """EventSub subscriptions the collector created or heard about (status, channel)."""
    table = db.twitch_subscriptions
    query = table.id > 0
    for name in ("status", "broadcaster_user_id", "subscription_type"):
        value = request.query.get(name)
        if value:
            query &= table[name] == value
    return _page(
        query,
        table.id,
        lambda r: {
            "subscription_id": r.subscription_id,
            "subscription_type": r.subscription_type,
            "version": r.version,
            "broadcaster_user_id": r.broadcaster_user_id,
            "condition": r.condition or {},
            "status": r.status,
            "revoked_reason": r.revoked_reason,
            "revoked_at": _iso(r.revoked_at),
            "created_at": _iso(r.created_at),
        },
    )


@endpoint("/api/twitch/activities", **API)
def list_activities():
    """Recorded activities with their points (filters: broadcaster_user_id, user_id)."""
    table = db.twitch_activities
    query = table.id > 0
    for name in ("broadcaster_user_id", "user_id", "activity_type"):
        value = request.query.get(name)
        if value:
            query &= table[name] == value
    return _page(
        query,
        ~table.id,
        lambda r: {
            "event_id": r.event_id,
            "activity_type": r.activity_type,
            "broadcaster_user_id": r.broadcaster_user_id,
            "user_id": r.user_id,
            "user_name": r.user_name,
            "amount": r.amount,
            "points": r.points,
            "context_sent": bool(r.context_sent),
            "created_at": _iso(r.created_at),
        },
    )


@endpoint("/api/twitch/channels", **API)
def list_channels():
    """Connected Twitch accounts (never their tokens)."""
    page, per_page = page_params()
    if tokens is None:
        return page_of([], page=page, per_page=per_page, total=0)
    total, items = tokens.channels(offset=(page - 1) * per_page, limit=per_page)
    return page_of(items, page=page, per_page=per_page, total=total)


@endpoint("/api/twitch/status", uses=(service_key,))
def status():
    """Configuration flags, lifecycle, forwarding backlog and chat queue."""
    return {
        "module_name": settings.module_name,
        "configured": {
            "app": settings.twitch_configured,
            "webhook_secret": bool(settings.twitch_webhook_secret),
            "bot_user_id": bool(settings.twitch_bot_user_id),
        },
        "lifecycle": lifecycle.status() if lifecycle is not None else {"enabled": False},
        "forwarder": forwarder.backlog(),
        "chat": (
            {"pending": chat.pending(), "sent": chat.sent, "dropped": chat.dropped}
            if chat is not None
            else None
        ),
    }
