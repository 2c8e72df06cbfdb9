"""Connecting a Twitch account: the authorization-code flow end to end.

``login_url`` stores a random one-time ``state`` in the store (with a TTL) and builds
the id.twitch.tv authorize URL. ``complete`` checks and consumes the state, exchanges
the code, asks Helix who the user is (refreshing the new token once on a 401), stores
the tokens encrypted, and activates the channel in the router - unless the account is
the bot itself, whose token is only kept for moderation calls.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable

from waddlebot.contracts import entity_id_for
from waddlebot.db import Database
from waddlebot.store import Store
from waddlebot.twitch.helix import HelixClient, HelixError
from waddlebot.twitch.oauth import DEFAULT_SCOPES, OAuthClient, OAuthError, UserTokenProvider
from waddlebot.web import ApiError, ServiceUnavailable, ValidationError

from .router import RouterClient, RouterError
from .subscriptions import reopen_revoked
from .tokens import TokenStore

log = logging.getLogger("waddlebot.twitch.oauth")

STATE_PREFIX = "twitch:oauth:state:"
STATE_TTL = 600


@dataclasses.dataclass(frozen=True, slots=True)
class Connected:
    """The account that just connected."""

    user_id: str
    login: str
    display_name: str
    scopes: tuple[str, ...]
    entity_id: str | None

    def to_dict(self) -> dict:
        """JSON answer of the callback."""
        return {
            "status": "connected",
            "user_id": self.user_id,
            "login": self.login,
            "display_name": self.display_name,
            "scopes": list(self.scopes),
            "entity_id": self.entity_id,
        }


class OAuthFlow:
    """Authorize URL with a stored state, then code → tokens → user → activation."""

    def __init__(
        self,
        *,
        oauth: OAuthClient,
        helix: HelixClient,
        tokens: TokenStore,
        store: Store,
        router: RouterClient,
        database: Database,
        redirect_uri: str,
        bot_user_id: str | None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        on_activated: Callable[[str], None] | None = None,
    ):
        self.oauth = oauth
        self.helix = helix
        self.tokens = tokens
        self.store = store
        self.router = router
        self.database = database
        self.redirect_uri = redirect_uri
        self.bot_user_id = bot_user_id
        self.scopes = scopes
        self.on_activated = on_activated

    def login_url(self) -> str:
        """A fresh state, remembered for ``STATE_TTL`` seconds, in the authorize URL."""
        state = secrets.token_urlsafe(24)
        self.store.set(STATE_PREFIX + state, "1", ttl=STATE_TTL)
        return self.oauth.authorize_url(
            redirect_uri=self.redirect_uri, state=state, scopes=self.scopes
        )

    def complete(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Connected:
        """Finish the flow; ValidationError (400) for a bad state/code, 502/503 upstream."""
        if not state or self.store.delete(STATE_PREFIX + state) == 0:
            raise ValidationError("unknown or expired OAuth state; start again", field="state")
        if error:
            reason = (error_description or error)[:200]
            raise ValidationError(f"Twitch authorization was not granted: {reason}", field="error")
        if not code:
            raise ValidationError("code is required", field="code")
        try:
            grant = self.oauth.exchange_code(code, redirect_uri=self.redirect_uri)
        except OAuthError as exc:
            if exc.unreachable:
                raise ServiceUnavailable(f"Twitch token endpoint unavailable: {exc}") from None
            raise ValidationError(f"Twitch refused the code: {exc}", field="code") from None
        provider = UserTokenProvider(self.oauth, grant)
        try:
            users = self.helix.get_users(token=provider)
        except HelixError as exc:
            raise ApiError(
                f"Twitch did not return the user: {exc}", status=502, code="bad_gateway"
            ) from None
        if not users:
            raise ApiError("Twitch returned no user for the token", status=502, code="bad_gateway")
        user = users[0]
        user_id = str(user.get("id") or "")
        login = str(user.get("login") or user_id)
        display = str(user.get("display_name") or login)
        final = provider.grant
        self.tokens.save(user_id=user_id, login=login, display_name=display, grant=final)
        with self.database.connection() as db:
            reopen_revoked(db, user_id)
        if self.bot_user_id and user_id == self.bot_user_id:
            log.info("bot account %s connected", login)
            return Connected(user_id, login, display, final.scopes, None)
        try:
            self.router.activate(
                platform="twitch",
                channel_id=user_id,
                owner_user_id=user_id,
                config={"login": login, "display_name": display},
            )
        except RouterError as exc:
            raise ServiceUnavailable(
                "the Twitch account is connected but the router could not activate the "
                f"channel ({exc}); sign in again shortly"
            ) from None
        log.info("Twitch channel %s (%s) connected and activated", login, user_id)
        if self.on_activated is not None:
            self.on_activated(user_id)
        return Connected(
            user_id, login, display, final.scopes, entity_id_for("twitch", user_id, user_id)
        )
