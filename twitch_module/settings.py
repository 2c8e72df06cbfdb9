"""Settings of the twitch app, read once from the environment at import (spec names).

Nothing Twitch-specific is required: in ``waddlebot up`` none of it is set and the app
still loads. Features that need a variable answer 503 naming it, and the lifecycle
thread (registration, claims, EventSub subscriptions) runs only when ``TWITCH_APP_ID``
and ``TWITCH_APP_SECRET`` are set.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping

from waddlebot.settings import CommonSettings, Env, Secret, SettingsError, common_fields
from waddlebot.twitch.helix import DEFAULT_API_BASE_URL
from waddlebot.twitch.oauth import DEFAULT_AUTH_BASE_URL


@dataclasses.dataclass(frozen=True)
class Settings(CommonSettings):
    """The shared settings plus Twitch credentials, URLs, coordination and chat limits."""

    twitch_app_id: str
    twitch_app_secret: Secret
    twitch_webhook_secret: Secret
    twitch_webhook_callback_url: str
    twitch_redirect_uri: str
    twitch_bot_user_id: str | None
    twitch_bot_username: str | None
    twitch_api_base_url: str
    twitch_auth_base_url: str
    twitch_token_key: Secret
    max_claims: int
    heartbeat_interval: float
    checkin_interval: float
    container_id: str
    chat_rate_limit: int
    chat_rate_limit_moderator: int
    chat_rate_window: float
    eventsub_max_age: int
    forward_max_backoff: float
    forward_workers: int

    @property
    def twitch_configured(self) -> bool:
        """True when the app credentials are set (OAuth, Helix and the lifecycle work)."""
        return bool(self.twitch_app_id and self.twitch_app_secret)

    def missing_for_twitch(self) -> str | None:
        """The first unset variable that OAuth and Helix calls need, or None."""
        if not self.twitch_app_id:
            return "TWITCH_APP_ID"
        if not self.twitch_app_secret:
            return "TWITCH_APP_SECRET"
        return None


def _webhook_secret(env: Env) -> Secret:
    secret = env.secret("TWITCH_WEBHOOK_SECRET", "")
    if secret and not 10 <= len(secret.reveal()) <= 100:
        # Twitch refuses to create a subscription with a secret outside 10-100 characters
        raise SettingsError("TWITCH_WEBHOOK_SECRET", "must be 10 to 100 characters long")
    return secret


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings; a bad variable raises SettingsError naming it."""
    env = Env(environ)
    common = common_fields(env, module_name="twitch")
    public = common["public_base_url"]
    return Settings(
        **common,
        twitch_app_id=env.str("TWITCH_APP_ID", ""),
        twitch_app_secret=env.secret("TWITCH_APP_SECRET", ""),
        twitch_webhook_secret=_webhook_secret(env),
        twitch_webhook_callback_url=env.str(
            "TWITCH_WEBHOOK_CALLBACK_URL", f"{public}/webhooks/twitch/eventsub"
        ),
        twitch_redirect_uri=env.str(
            "TWITCH_REDIRECT_URI", f"{public}/webhooks/twitch/auth/callback"
        ),
        twitch_bot_user_id=env.str("TWITCH_BOT_USER_ID", None),
        twitch_bot_username=env.str("TWITCH_BOT_USERNAME", None),
        twitch_api_base_url=env.str("TWITCH_API_BASE_URL", DEFAULT_API_BASE_URL).rstrip("/"),
        twitch_auth_base_url=env.str("TWITCH_AUTH_BASE_URL", DEFAULT_AUTH_BASE_URL).rstrip("/"),
        twitch_token_key=env.secret("TWITCH_TOKEN_KEY", ""),
        max_claims=env.int("MAX_CLAIMS", 5, minimum=0),
        heartbeat_interval=env.float("HEARTBEAT_INTERVAL", 300.0, minimum=0.05),
        checkin_interval=env.float("TWITCH_CHECKIN_INTERVAL", 300.0, minimum=0.05),
        container_id=env.str("CONTAINER_ID", f"{socket.gethostname()}-{os.getpid()}"),
        chat_rate_limit=env.int("TWITCH_CHAT_RATE_LIMIT", 20, minimum=1),
        chat_rate_limit_moderator=env.int("TWITCH_CHAT_RATE_LIMIT_MODERATOR", 100, minimum=1),
        chat_rate_window=env.float("TWITCH_CHAT_RATE_WINDOW", 30.0, minimum=0.1),
        eventsub_max_age=env.int("TWITCH_EVENTSUB_MAX_AGE", 600, minimum=1),
        forward_max_backoff=env.float("TWITCH_FORWARD_MAX_BACKOFF", 10.0, minimum=0.1),
        forward_workers=env.int("TWITCH_FORWARD_WORKERS", 4, minimum=1),
    )


settings = load()
