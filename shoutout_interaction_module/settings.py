"""Settings of the shoutout app, read once from the environment at import.

Nothing Twitch-specific is required: without ``TWITCH_APP_ID`` / ``TWITCH_APP_SECRET``
the app still loads and ``!so`` gives a plain chat shoutout that says which variable
is missing. Twitch's own ``/shoutout`` needs a moderator's user token: the bot's
(``TWITCH_BOT_USER_ID`` + ``TWITCH_BOT_REFRESH_TOKEN``, a bot that moderates the
channel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from waddlebot.settings import CommonSettings, Env, Secret, common_fields
from waddlebot.twitch.helix import DEFAULT_API_BASE_URL
from waddlebot.twitch.oauth import DEFAULT_AUTH_BASE_URL


@dataclasses.dataclass(frozen=True)
class Settings(CommonSettings):
    """The shared settings plus Twitch credentials, URLs, timeouts and cooldowns."""

    twitch_app_id: str
    twitch_app_secret: Secret
    twitch_api_base_url: str
    twitch_auth_base_url: str
    twitch_bot_user_id: str | None
    twitch_bot_refresh_token: Secret
    twitch_timeout: float
    lookup_cache_ttl: int
    clip_days: int
    auto_cooldown: int

    def missing_for_twitch(self) -> tuple[str, ...]:
        """The unset variables that Twitch lookups need (empty when configured)."""
        return tuple(
            name
            for name, value in (
                ("TWITCH_APP_ID", self.twitch_app_id),
                ("TWITCH_APP_SECRET", self.twitch_app_secret),
            )
            if not value
        )


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings; a bad variable raises SettingsError naming it."""
    env = Env(environ)
    return Settings(
        **common_fields(env, module_name="shoutout"),
        twitch_app_id=env.str("TWITCH_APP_ID", ""),
        twitch_app_secret=env.secret("TWITCH_APP_SECRET", ""),
        twitch_api_base_url=env.str("TWITCH_API_BASE_URL", DEFAULT_API_BASE_URL).rstrip("/"),
        twitch_auth_base_url=env.str("TWITCH_AUTH_BASE_URL", DEFAULT_AUTH_BASE_URL).rstrip("/"),
        twitch_bot_user_id=env.str("TWITCH_BOT_USER_ID", None),
        twitch_bot_refresh_token=env.secret("TWITCH_BOT_REFRESH_TOKEN", ""),
        twitch_timeout=env.float("SHOUTOUT_TWITCH_TIMEOUT", 5.0, minimum=0.1),
        lookup_cache_ttl=env.int("SHOUTOUT_CACHE_TTL", 300, minimum=0),
        clip_days=env.int("SHOUTOUT_CLIP_DAYS", 7, minimum=1),
        auto_cooldown=env.int("SHOUTOUT_AUTO_COOLDOWN", 3600, minimum=1),
    )


settings = load()
