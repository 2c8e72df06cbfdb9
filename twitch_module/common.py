"""Fixtures and long-lived services of the twitch app, built here and nowhere else.

Always running: the webhook receiver and the forwarder thread (stored notifications →
router). With ``TWITCH_APP_ID``/``TWITCH_APP_SECRET``: the OAuth flow, the Helix client,
the chat sender and the lifecycle thread (registration, heartbeats, claims,
subscriptions; claims released at exit). Without them the app still loads and the
features that need them answer 503 naming the missing variable.
"""

import atexit

from waddlebot.app import AppServices
from waddlebot.twitch.helix import HelixClient
from waddlebot.twitch.oauth import AppTokenProvider, OAuthClient
from waddlebot.twitch.tokens import TokenCipher

from . import models
from .services.chat import ChatSender, Moderator
from .services.forwarder import EventForwarder
from .services.lifecycle import CollectorLifecycle, collector_registration
from .services.oauth_flow import OAuthFlow
from .services.router import RouterClient
from .services.subscriptions import SubscriptionManager
from .services.tokens import TokenStore
from .services.webhook import EventSubReceiver
from .settings import settings

services = AppServices(
    settings, short_name="twitch", api_prefix="/api/twitch", definers=[models.define_tables]
)
database = services.database
db = services.db
store = services.store
service_key = services.service_key
metrics = services.metrics


class TwitchMetrics:
    """The collector's counters and histograms (exported by /api/twitch/metrics)."""

    webhooks = metrics.counter(
        "webhook_messages_total", "EventSub webhook messages, by outcome", ("outcome",)
    )
    webhook_latency = metrics.histogram("webhook_seconds", "Time to answer an EventSub webhook")


router = RouterClient(
    settings.router_api_url, settings.api_keys[0].reveal(), timeout=settings.request_timeout
)

oauth = helix = tokens = chat = moderator = oauth_flow = lifecycle = None
if settings.twitch_configured:
    oauth = OAuthClient(
        settings.twitch_app_id,
        settings.twitch_app_secret,
        auth_base_url=settings.twitch_auth_base_url,
        timeout=min(settings.request_timeout, 10.0),
    )
    helix = HelixClient(
        client_id=settings.twitch_app_id,
        app_token=AppTokenProvider(oauth),
        api_base_url=settings.twitch_api_base_url,
        bot_user_id=settings.twitch_bot_user_id,
        timeout=min(settings.request_timeout, 10.0),
    )
    tokens = TokenStore(
        database,
        oauth,
        TokenCipher((settings.twitch_token_key or settings.twitch_app_secret).reveal()),
    )
    moderator = Moderator(helix=helix, tokens=tokens, bot_user_id=settings.twitch_bot_user_id)
    if settings.twitch_bot_user_id:
        chat = ChatSender(
            helix=helix,
            store=store,
            sender_id=settings.twitch_bot_user_id,
            limit=settings.chat_rate_limit,
            moderator_limit=settings.chat_rate_limit_moderator,
            window=settings.chat_rate_window,
        )
        chat.start()
    oauth_flow = OAuthFlow(
        oauth=oauth,
        helix=helix,
        tokens=tokens,
        store=store,
        router=router,
        database=database,
        redirect_uri=settings.twitch_redirect_uri,
        bot_user_id=settings.twitch_bot_user_id,
    )


def _note_bot_roles(broadcaster_id: str, roles: tuple[str, ...]) -> None:
    """The bot's own chat line shows its badges: moderators and VIPs may chat faster."""
    if chat is not None and broadcaster_id:
        chat.mark_moderator(broadcaster_id, bool({"broadcaster", "moderator", "vip"} & set(roles)))


forwarder = EventForwarder(
    database=database,
    router=router,
    bot_user_id=settings.twitch_bot_user_id,
    on_bot_roles=_note_bot_roles,
    workers=settings.forward_workers,
    max_backoff=settings.forward_max_backoff,
)
receiver = EventSubReceiver(
    database=database,
    store=store,
    secret=settings.twitch_webhook_secret,
    max_age=settings.eventsub_max_age,
    on_stored=forwarder.submit,
)
forwarder.start()

if settings.twitch_configured:
    lifecycle = CollectorLifecycle(
        router=router,
        registration=collector_registration(
            module_name=settings.module_name,
            module_version=settings.module_version,
            public_url=settings.public_base_url,
        ),
        container_id=settings.container_id,
        max_claims=settings.max_claims,
        heartbeat_interval=settings.heartbeat_interval,
        checkin_interval=settings.checkin_interval,
        subscriptions=SubscriptionManager(
            database=database,
            helix=helix,
            callback=settings.twitch_webhook_callback_url,
            secret=settings.twitch_webhook_secret,
            bot_user_id=settings.twitch_bot_user_id,
            container_id=settings.container_id,
        ),
        helix=helix,
    )
    oauth_flow.on_activated = lambda _channel: lifecycle.claim_soon()
    lifecycle.start()
    atexit.register(lifecycle.shutdown)


def _extras() -> dict:
    body = {"forwarder": dict(forwarder.counts)}
    if chat is not None:
        body["chat"] = {"pending": chat.pending(), "sent": chat.sent, "dropped": chat.dropped}
    return body


services.metrics_extras.append(_extras)
