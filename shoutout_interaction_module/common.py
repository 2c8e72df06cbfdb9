"""Fixtures and long-lived services of the shoutout app, built here and nowhere else."""

import logging

from waddlebot.app import AppServices
from waddlebot.modules import ModuleRegistration

from . import models
from .services.cooldowns import Cooldowns
from .services.registration import registration_payload
from .services.shoutouts import ShoutoutService
from .services.twitch import TwitchGateway
from .settings import settings

log = logging.getLogger("waddlebot.shoutout")

services = AppServices(
    settings, short_name="shoutout", api_prefix="/api/shoutout", definers=[models.define_tables]
)
database = services.database
service_key = services.service_key

missing = " and ".join(settings.missing_for_twitch())
twitch = None
if not missing:
    twitch = TwitchGateway(
        client_id=settings.twitch_app_id,
        client_secret=settings.twitch_app_secret,
        api_base_url=settings.twitch_api_base_url,
        auth_base_url=settings.twitch_auth_base_url,
        store=services.store,
        timeout=settings.twitch_timeout,
        cache_ttl=settings.lookup_cache_ttl,
        clip_days=settings.clip_days,
        bot_user_id=settings.twitch_bot_user_id,
        bot_refresh_token=settings.twitch_bot_refresh_token,
    )
    if not twitch.can_send_shoutouts:
        log.warning(
            "Twitch /shoutout is off: set TWITCH_BOT_USER_ID and TWITCH_BOT_REFRESH_TOKEN "
            "(a bot account that moderates the channels)"
        )
else:
    log.warning("Twitch lookups are off (%s not set): !so gives plain chat shoutouts", missing)

shoutouts = ShoutoutService(
    database=database,
    cooldowns=Cooldowns(services.store),
    twitch=twitch,
    missing_credentials=missing or None,
    auto_cooldown=settings.auto_cooldown,
)

# the router may not listen yet (``waddlebot up`` loads every app first): register from
# a background thread that retries, then heartbeats
registration = ModuleRegistration(
    router_url=settings.router_api_url,
    api_key=settings.api_keys[0].reveal(),
    payload=registration_payload(
        module_name=settings.module_name,
        module_version=settings.module_version,
        endpoint_url=settings.public_base_url,
    ),
).start()
