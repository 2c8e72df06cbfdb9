"""The Twitch Helix API client shared by the collector and the shoutout module.

Every call carries ``Client-Id`` and a bearer token from a token provider (the app
token unless a user token is passed). Twitch's rate limit is honoured: after each
answer the ``Ratelimit-Remaining`` / ``Ratelimit-Reset`` headers are remembered per
token bucket, and when nothing remains the next call sleeps until the reset; a 429 is
retried after the reset. A 401 refreshes the token and retries once. Chat messages
longer than Twitch's 500-character limit are split on word boundaries.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from ..http import HttpError, session
from .eventsub import SubscriptionSpec
from .oauth import OAuthError, TokenProvider

log = logging.getLogger("waddlebot.twitch.helix")

DEFAULT_API_BASE_URL = "https://api.twitch.tv/helix"
CHAT_MESSAGE_LIMIT = 500
#: longest the client sleeps for a rate-limit reset before giving up on a call
MAX_RATE_LIMIT_WAIT = 60.0


class HelixError(HttpError):
    """A Helix call failed: connection error, timeout, or a non-2xx answer."""


def split_message(text: str, limit: int = CHAT_MESSAGE_LIMIT) -> list[str]:
    """Split chat text into messages of at most ``limit`` characters, on word boundaries."""
    chunks: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(word[:limit])
            word = word[limit:]
        if not word:
            continue
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= limit:
            current = f"{current} {word}"
        else:
            chunks.append(current)
            current = word
    if current:
        chunks.append(current)
    return chunks


def rfc3339(moment: datetime.datetime | str | None) -> str | None:
    """A datetime as Helix wants it in query strings (UTC, ``Z``); strings pass through."""
    if moment is None or isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HelixClient:
    """Calls to ``TWITCH_API_BASE_URL`` with rate limiting, 429 retry and 401 refresh."""

    def __init__(
        self,
        *,
        client_id: str,
        app_token: TokenProvider,
        api_base_url: str = DEFAULT_API_BASE_URL,
        bot_user_id: str | None = None,
        timeout: float = 10.0,
        max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT,
        max_429_retries: int = 3,
        http: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.client_id = client_id
        self.app_token = app_token
        self.api_base_url = api_base_url.rstrip("/")
        self.bot_user_id = bot_user_id
        self.timeout = timeout
        self.max_rate_limit_wait = max_rate_limit_wait
        self.max_429_retries = max_429_retries
        self._http = http or session()
        self._sleep = sleep
        self._clock = clock
        self._reset_at: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- transport --------------------------------------------------------------------
    def _wait_for_budget(self, bucket: str) -> None:
        with self._lock:
            reset_at = self._reset_at.get(bucket, 0.0)
        delay = reset_at - self._clock()
        if delay > 0:
            log.info("helix rate limit exhausted for %s; waiting %.1fs", bucket, delay)
            self._sleep(min(delay, self.max_rate_limit_wait))

    def _note_budget(self, bucket: str, answer: requests.Response) -> float | None:
        """Remember an exhausted budget; returns the reset time from the headers."""
        reset = _number(answer.headers.get("Ratelimit-Reset"))
        remaining = _number(answer.headers.get("Ratelimit-Remaining"))
        with self._lock:
            if remaining is not None and remaining <= 0 and reset is not None:
                self._reset_at[bucket] = reset
            elif remaining is not None and remaining > 0:
                self._reset_at.pop(bucket, None)
        return reset

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        token: TokenProvider | None = None,
    ) -> Any:
        """One Helix call; returns the decoded JSON (None for 204) or raises HelixError."""
        provider = token or self.app_token
        url = f"{self.api_base_url}/{path.lstrip('/')}"
        refreshed = False
        throttled = 0
        while True:
            self._wait_for_budget(provider.bucket)
            try:
                bearer = provider.access_token()
            except OAuthError as exc:
                raise HelixError(f"no token for {method} {path}: {exc}", url=url) from None
            headers = {"Client-Id": self.client_id, "Authorization": f"Bearer {bearer}"}
            try:
                answer = self._http.request(
                    method, url, params=params, json=json, headers=headers, timeout=self.timeout
                )
            except requests.Timeout:
                raise HelixError(
                    f"{method} {path} timed out after {self.timeout}s", url=url, timeout=True
                ) from None
            except requests.RequestException as exc:
                raise HelixError(f"{method} {path} failed: {type(exc).__name__}", url=url) from None
            reset = self._note_budget(provider.bucket, answer)
            if answer.status_code == 401 and not refreshed:
                refreshed = True
                try:
                    provider.refresh()
                except OAuthError as exc:
                    raise HelixError(
                        f"{method} {path}: token refused and refresh failed: {exc}",
                        url=url,
                        status=401,
                    ) from None
                continue
            if answer.status_code == 429 and throttled < self.max_429_retries:
                throttled += 1
                delay = (reset - self._clock()) if reset is not None else 1.0
                self._sleep(min(max(delay, 0.05), self.max_rate_limit_wait))
                continue
            return _decode(method, path, url, answer)

    # -- users, channels, clips, streams ----------------------------------------------
    def get_users(
        self,
        *,
        logins: Iterable[str] = (),
        ids: Iterable[str] = (),
        token: TokenProvider | None = None,
    ) -> list[dict]:
        """Users by login and/or id (at most 100 together); the token's user when none given."""
        params: dict[str, list[str]] = {}
        if logins:
            params["login"] = list(logins)
        if ids:
            params["id"] = list(ids)
        return _data(self.request("GET", "/users", params=params or None, token=token))

    def get_channel(self, broadcaster_id: str) -> dict | None:
        """Channel information (title, ``game_name`` of the last game played) or None."""
        found = _data(self.request("GET", "/channels", params={"broadcaster_id": broadcaster_id}))
        return found[0] if found else None

    def get_clips(
        self,
        broadcaster_id: str,
        *,
        started_at: datetime.datetime | str | None = None,
        ended_at: datetime.datetime | str | None = None,
        first: int = 20,
    ) -> list[dict]:
        """Clips of a broadcaster, optionally within a time range (``first`` ≤ 100)."""
        params = {"broadcaster_id": broadcaster_id, "first": max(1, min(int(first), 100))}
        if started_at is not None:
            params["started_at"] = rfc3339(started_at)
        if ended_at is not None:
            params["ended_at"] = rfc3339(ended_at)
        return _data(self.request("GET", "/clips", params=params))

    def get_streams(
        self, *, user_ids: Iterable[str] = (), user_logins: Iterable[str] = ()
    ) -> list[dict]:
        """Live streams among the given broadcasters (offline ones are absent)."""
        params: dict[str, Any] = {"first": 100}
        if user_ids:
            params["user_id"] = list(user_ids)
        if user_logins:
            params["user_login"] = list(user_logins)
        return _data(self.request("GET", "/streams", params=params))

    def is_live(self, broadcaster_id: str) -> bool:
        """Whether the broadcaster is streaming now."""
        return any(s.get("type") == "live" for s in self.get_streams(user_ids=[broadcaster_id]))

    # -- EventSub ---------------------------------------------------------------------
    def create_eventsub_subscription(
        self, spec: SubscriptionSpec, *, callback: str, secret: str
    ) -> dict:
        """Create a webhook subscription (app token); returns the subscription object."""
        answer = self.request(
            "POST", "/eventsub/subscriptions", json=spec.body(callback=callback, secret=secret)
        )
        found = _data(answer)
        if not found:
            raise HelixError("EventSub answered without a subscription", url=self.api_base_url)
        return found[0]

    def list_eventsub_subscriptions(
        self, *, status: str | None = None, type: str | None = None, user_id: str | None = None
    ) -> list[dict]:
        """Every subscription of the app matching one optional filter (pages followed)."""
        params: dict[str, str] = {}
        if status:
            params["status"] = status
        elif type:
            params["type"] = type
        elif user_id:
            params["user_id"] = user_id
        found: list[dict] = []
        while True:
            answer = self.request("GET", "/eventsub/subscriptions", params=dict(params)) or {}
            found += _data(answer)
            cursor = (answer.get("pagination") or {}).get("cursor")
            if not cursor or len(found) > 100_000:
                return found
            params["after"] = cursor

    def delete_eventsub_subscription(self, subscription_id: str) -> None:
        """Delete one subscription."""
        self.request("DELETE", "/eventsub/subscriptions", params={"id": subscription_id})

    # -- chat, shoutouts, moderation ------------------------------------------------------
    def send_chat_message(
        self,
        broadcaster_id: str,
        message: str,
        *,
        sender_id: str | None = None,
        reply_parent_message_id: str | None = None,
        token: TokenProvider | None = None,
    ) -> list[dict]:
        """Post to a channel's chat as the bot, split into ≤500-character messages."""
        sender = sender_id or self.bot_user_id
        if not sender:
            raise ValueError("sender_id is required (TWITCH_BOT_USER_ID is not configured)")
        results = []
        for position, chunk in enumerate(split_message(message)):
            body = {"broadcaster_id": broadcaster_id, "sender_id": sender, "message": chunk}
            if reply_parent_message_id and position == 0:
                body["reply_parent_message_id"] = reply_parent_message_id
            sent = _data(self.request("POST", "/chat/messages", json=body, token=token))
            result = sent[0] if sent else {}
            if result and not result.get("is_sent", True):
                log.warning(
                    "twitch dropped a chat message in %s: %s",
                    broadcaster_id,
                    (result.get("drop_reason") or {}).get("message", "no reason given"),
                )
            results.append(result)
        return results

    def send_shoutout(
        self,
        from_broadcaster_id: str,
        to_broadcaster_id: str,
        moderator_id: str,
        *,
        token: TokenProvider,
    ) -> None:
        """A Twitch shoutout (needs the moderator's user token)."""
        self.request(
            "POST",
            "/chat/shoutouts",
            params={
                "from_broadcaster_id": from_broadcaster_id,
                "to_broadcaster_id": to_broadcaster_id,
                "moderator_id": moderator_id,
            },
            token=token,
        )

    def delete_chat_message(
        self, broadcaster_id: str, moderator_id: str, message_id: str, *, token: TokenProvider
    ) -> None:
        """Delete one chat message (needs the moderator's user token)."""
        self.request(
            "DELETE",
            "/moderation/chat",
            params={
                "broadcaster_id": broadcaster_id,
                "moderator_id": moderator_id,
                "message_id": message_id,
            },
            token=token,
        )


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _data(answer: Any) -> list[dict]:
    if isinstance(answer, dict) and isinstance(answer.get("data"), list):
        return [item for item in answer["data"] if isinstance(item, dict)]
    return []


def _decode(method: str, path: str, url: str, answer: requests.Response) -> Any:
    body: Any = None
    if answer.content:
        try:
            body = answer.json()
        except ValueError:
            body = answer.text[:500]
    if not answer.ok:
        reason = body.get("message") if isinstance(body, dict) else None
        raise HelixError(
            f"{method} {path} answered {answer.status_code}" + (f": {reason}" if reason else ""),
            url=url,
            status=answer.status_code,
            body=body,
        )
    return body
