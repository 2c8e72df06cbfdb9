"""The Twitch OAuth client (id.twitch.tv) and the token providers Helix calls use.

:class:`OAuthClient` builds the authorization-code URL and exchanges codes, refresh
tokens and client credentials at ``<auth base>/token``. A *token provider* is what a
Helix call asks for a bearer token: :class:`AppTokenProvider` holds the app access
token (client credentials, needed for EventSub webhooks and app-level calls);
:class:`UserTokenProvider` holds one user's token and refreshes it shortly before it
expires or when Helix answers 401. Token values never appear in a repr or a message.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import urlencode

import requests

from ..http import session
from ..settings import Secret

DEFAULT_AUTH_BASE_URL = "https://id.twitch.tv/oauth2"

#: scopes a channel grants the collector (chat, moderation, shoutouts, bits, subs)
DEFAULT_SCOPES = (
    "chat:read",
    "chat:edit",
    "user:read:chat",
    "user:write:chat",
    "user:bot",
    "channel:bot",
    "moderator:read:followers",
    "moderator:manage:chat_messages",
    "moderator:manage:shoutouts",
    "bits:read",
    "channel:read:subscriptions",
)

#: seconds before expiry at which a token is refreshed rather than used
REFRESH_MARGIN = 120.0


class OAuthError(Exception):
    """Twitch refused a token request, or could not be reached (``status`` None)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def unreachable(self) -> bool:
        """True when Twitch did not answer or answered with a server error."""
        return self.status is None or self.status >= 500


@dataclasses.dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint answered; ``expires_at`` is a ``time.time()`` value."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    token_type: str = "bearer"

    @classmethod
    def from_answer(cls, body: dict, *, now: float | None = None) -> TokenGrant:
        """Build a grant from the JSON of ``POST /token``."""
        now = time.time() if now is None else now
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthError("token answer has no access_token", status=502)
        expires_in = body.get("expires_in")
        scopes = body.get("scope") or ()
        if isinstance(scopes, str):
            scopes = scopes.split()
        return cls(
            access_token=access,
            refresh_token=body.get("refresh_token") or None,
            expires_at=now + float(expires_in) if isinstance(expires_in, (int, float)) else None,
            scopes=tuple(str(s) for s in scopes),
            token_type=str(body.get("token_type") or "bearer"),
        )

    def expires_soon(self, *, now: float | None = None, margin: float = REFRESH_MARGIN) -> bool:
        """True when the token is expired or will be within ``margin`` seconds."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at - margin


class OAuthClient:
    """Authorization-code, refresh-token and client-credentials grants at id.twitch.tv."""

    def __init__(
        self,
        client_id: str,
        client_secret: Secret,
        *,
        auth_base_url: str = DEFAULT_AUTH_BASE_URL,
        timeout: float = 10.0,
        http: requests.Session | None = None,
    ):
        self.client_id = client_id
        self._secret = client_secret
        self.auth_base_url = auth_base_url.rstrip("/")
        self.timeout = timeout
        self._http = http or session()

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        force_verify: bool = False,
    ) -> str:
        """Where to send a streamer to grant the app access."""
        params = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "state": state,
        }
        if force_verify:
            params["force_verify"] = "true"
        return f"{self.auth_base_url}/authorize?{urlencode(params)}"

    def exchange_code(self, code: str, *, redirect_uri: str) -> TokenGrant:
        """Trade an authorization code for a user token."""
        return self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A new user token from a refresh token (keeps the old refresh token if none given)."""
        grant = self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})
        if grant.refresh_token is None:
            grant = dataclasses.replace(grant, refresh_token=refresh_token)
        return grant

    def client_credentials(self) -> TokenGrant:
        """An app access token (no user), for EventSub webhooks and app-level calls."""
        return self._token({"grant_type": "client_credentials"})

    def _token(self, form: dict) -> TokenGrant:
        url = f"{self.auth_base_url}/token"
        data = {**form, "client_id": self.client_id, "client_secret": self._secret.reveal()}
        try:
            answer = self._http.post(url, data=data, timeout=self.timeout)
        except requests.RequestException as exc:
            raise OAuthError(f"POST {url} failed: {type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not answer.ok:
            reason = body.get("message") if isinstance(body, dict) else None
            raise OAuthError(
                f"{form['grant_type']} grant refused: HTTP {answer.status_code}"
                + (f" ({reason})" if reason else ""),
                status=answer.status_code,
            )
        if not isinstance(body, dict):
            raise OAuthError("token answer is not a JSON object", status=502)
        return TokenGrant.from_answer(body)


class TokenProvider(Protocol):
    """What a Helix call needs: a bearer token, and a way to get a fresh one."""

    #: rate-limit bucket of this token (Twitch counts per app, or per app and user)
    bucket: str

    def access_token(self) -> str:
        """A token that is valid now (refreshed first if it is about to expire)."""

    def refresh(self) -> str:
        """Force a new token (after a 401) and return it."""


class AppTokenProvider:
    """The app access token from client credentials, cached until shortly before expiry."""

    bucket = "app"

    def __init__(self, oauth: OAuthClient, *, margin: float = REFRESH_MARGIN):
        self._oauth = oauth
        self._margin = margin
        self._grant: TokenGrant | None = None
        self._lock = threading.Lock()

    def access_token(self) -> str:
        """The cached app token, fetched when missing or about to expire."""
        with self._lock:
            if self._grant is None or self._grant.expires_soon(margin=self._margin):
                self._grant = self._oauth.client_credentials()
            return self._grant.access_token

    def refresh(self) -> str:
        """Fetch a new app token (the old one was refused)."""
        with self._lock:
            self._grant = self._oauth.client_credentials()
            return self._grant.access_token


class UserTokenProvider:
    """One user's token; refreshes itself, reporting new grants and refused refreshes."""

    def __init__(
        self,
        oauth: OAuthClient,
        grant: TokenGrant,
        *,
        user_id: str | None = None,
        on_refresh: Callable[[TokenGrant], None] | None = None,
        on_refused: Callable[[OAuthError], None] | None = None,
        margin: float = REFRESH_MARGIN,
    ):
        self._oauth = oauth
        self._grant = grant
        self._on_refresh = on_refresh
        self._on_refused = on_refused
        self._margin = margin
        self._lock = threading.Lock()
        self.user_id = user_id
        self.bucket = f"user:{user_id}" if user_id else f"user:{id(self)}"

    @property
    def grant(self) -> TokenGrant:
        """The current grant (after any refresh)."""
        return self._grant

    def access_token(self) -> str:
        """The user's token, refreshed first when it expires within the margin."""
        with self._lock:
            if self._grant.expires_soon(margin=self._margin) and self._grant.refresh_token:
                self._refresh_locked()
            return self._grant.access_token

    def refresh(self) -> str:
        """Refresh now (Helix answered 401) and return the new token."""
        with self._lock:
            if not self._grant.refresh_token:
                raise OAuthError("the token was refused and there is no refresh token", status=401)
            self._refresh_locked()
            return self._grant.access_token

    def _refresh_locked(self) -> None:
        try:
            self._grant = self._oauth.refresh(self._grant.refresh_token)
        except OAuthError as exc:
            if not exc.unreachable and self._on_refused is not None:
                self._on_refused(exc)
            raise
        if self._on_refresh is not None:
            self._on_refresh(self._grant)
