"""What the shoutout module asks Twitch, through the shared Helix client.

:class:`TwitchGateway` looks users up (profile, last game), picks a clip from the
last days (featured first), tells whether a channel is live and sends Twitch's own
``/shoutout``. Lookups are cached in the shared store for ``SHOUTOUT_CACHE_TTL``
seconds so a raid train does not spend the Helix budget. The app access token comes
from client credentials; ``/shoutout`` needs a moderator's user token, here the bot's
(refreshed from ``TWITCH_BOT_REFRESH_TOKEN``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import random

from waddlebot.store import Store, StoreUnavailable
from waddlebot.twitch.helix import HelixClient, HelixError
from waddlebot.twitch.oauth import (
    AppTokenProvider,
    OAuthClient,
    TokenGrant,
    UserTokenProvider,
)

log = logging.getLogger("waddlebot.shoutout.twitch")

#: longest the module waits for Twitch's rate-limit reset before answering without it
RATE_LIMIT_WAIT = 2.0

TwitchError = HelixError


@dataclasses.dataclass(frozen=True, slots=True)
class TwitchUser:
    """A Twitch account as a shoutout shows it."""

    id: str
    login: str
    display_name: str
    profile_image_url: str | None
    description: str = ""

    @classmethod
    def from_helix(cls, data: dict) -> TwitchUser:
        """From one item of ``GET /users``."""
        login = str(data.get("login") or "")
        return cls(
            id=str(data.get("id") or ""),
            login=login,
            display_name=str(data.get("display_name") or login),
            profile_image_url=data.get("profile_image_url") or None,
            description=str(data.get("description") or ""),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Clip:
    """A clip to play on the overlay."""

    id: str
    url: str
    embed_url: str
    title: str
    thumbnail_url: str | None
    duration: float | None
    view_count: int
    is_featured: bool

    @classmethod
    def from_helix(cls, data: dict) -> Clip:
        """From one item of ``GET /clips``."""
        return cls(
            id=str(data.get("id") or ""),
            url=str(data.get("url") or ""),
            embed_url=str(data.get("embed_url") or ""),
            title=str(data.get("title") or ""),
            thumbnail_url=data.get("thumbnail_url") or None,
            duration=data.get("duration"),
            view_count=int(data.get("view_count") or 0),
            is_featured=bool(data.get("is_featured")),
        )


def pick_clip(clips: list[Clip], rng: random.Random | None = None) -> Clip | None:
    """A random playable clip, featured ones first; None when there is none."""
    playable = [c for c in clips if c.embed_url.startswith(("http://", "https://"))]
    featured = [c for c in playable if c.is_featured]
    pool = featured or playable
    return (rng or random).choice(pool) if pool else None


class TwitchGateway:
    """Helix lookups and shoutouts with a short store cache in front."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret,
        api_base_url: str,
        auth_base_url: str,
        store: Store,
        timeout: float,
        cache_ttl: int,
        clip_days: int,
        bot_user_id: str | None = None,
        bot_refresh_token=None,
    ):
        oauth = OAuthClient(client_id, client_secret, auth_base_url=auth_base_url, timeout=timeout)
        self.helix = HelixClient(
            client_id=client_id,
            app_token=AppTokenProvider(oauth),
            api_base_url=api_base_url,
            bot_user_id=bot_user_id,
            timeout=timeout,
            max_rate_limit_wait=RATE_LIMIT_WAIT,
        )
        self.store = store
        self.cache_ttl = cache_ttl
        self.clip_days = clip_days
        self.bot_user_id = bot_user_id
        self.bot_token = None
        if bot_user_id and bot_refresh_token:
            # no access token yet: the first use refreshes one from the refresh token
            grant = TokenGrant(
                access_token="", refresh_token=bot_refresh_token.reveal(), expires_at=0.0
            )
            self.bot_token = UserTokenProvider(oauth, grant, user_id=bot_user_id)

    @property
    def can_send_shoutouts(self) -> bool:
        """Whether a moderator token for ``/shoutout`` is configured."""
        return self.bot_token is not None

    # -- cache ----------------------------------------------------------------------------
    def _cached(self, key: str, fetch):
        if self.cache_ttl <= 0:
            return fetch()
        try:
            raw = self.store.get(key)
        except StoreUnavailable:
            raw = None
        if raw is not None:
            return json.loads(raw)
        value = fetch()
        try:
            self.store.set(key, json.dumps(value), ttl=self.cache_ttl)
        except StoreUnavailable:
            pass
        return value

    # -- lookups ----------------------------------------------------------------------------
    def user(self, *, login: str | None = None, user_id: str | None = None) -> TwitchUser | None:
        """A Twitch account by login or id, None when Twitch does not know it."""
        if user_id:
            key, params = f"shoutout:twitch:user-id:{user_id}", {"ids": [user_id]}
        else:
            key, params = f"shoutout:twitch:user:{(login or '').lower()}", {"logins": [login]}
        found = self._cached(key, lambda: self.helix.get_users(**params))
        return TwitchUser.from_helix(found[0]) if found else None

    def last_game(self, broadcaster_id: str) -> str | None:
        """The game the broadcaster last streamed (``game_name`` of the channel)."""
        channel = self._cached(
            f"shoutout:twitch:channel:{broadcaster_id}",
            lambda: self.helix.get_channel(broadcaster_id) or {},
        )
        return (channel or {}).get("game_name") or None

    def clips(self, broadcaster_id: str) -> list[Clip]:
        """Clips of the last ``SHOUTOUT_CLIP_DAYS`` days."""
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=self.clip_days)
        found = self._cached(
            f"shoutout:twitch:clips:{broadcaster_id}",
            lambda: self.helix.get_clips(broadcaster_id, started_at=since, first=100),
        )
        return [Clip.from_helix(c) for c in found]

    def is_live(self, broadcaster_id: str) -> bool:
        """Whether the channel streams right now (never cached)."""
        return self.helix.is_live(broadcaster_id)

    def send_shoutout(self, broadcaster_id: str, target_id: str) -> None:
        """Twitch's own ``/shoutout`` from ``broadcaster_id`` to ``target_id`` as the bot."""
        if self.bot_token is None:
            raise HelixError("no moderator token configured", url=self.helix.api_base_url)
        self.helix.send_shoutout(broadcaster_id, target_id, self.bot_user_id, token=self.bot_token)
