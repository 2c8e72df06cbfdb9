"""A local stand-in for id.twitch.tv OAuth and the Helix API, for tests and benchmarks.

:class:`TwitchStub` runs a :class:`~waddlebot.testkit.StubServer` that issues tokens
(authorization code, refresh token, client credentials), checks ``Client-Id`` and
bearer tokens on every Helix call (401 for an unknown or expired token), sends the
rate-limit headers, and answers the endpoints the apps use: users, channels, clips,
streams, EventSub subscriptions, chat messages, shoutouts and message deletion. Point
``TWITCH_AUTH_BASE_URL`` at :attr:`auth_url` and ``TWITCH_API_BASE_URL`` at
:attr:`helix_url`; every request is recorded on :attr:`server`.

:class:`EventSubSender` posts webhook messages to a collector signed exactly the way
Twitch signs them.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from urllib.parse import parse_qs

import requests

from ..testkit.stubs import Recorded, StubServer
from . import eventsub
from .eventsub import condition_broadcaster

_UNAUTHORIZED = (401, {"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"})


def _form(request: Recorded) -> dict[str, str]:
    parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _query(request: Recorded) -> dict[str, list[str]]:
    return parse_qs(request.query, keep_blank_values=True)


class TwitchStub:
    """OAuth + Helix on one local port, with users, codes, live streams and clips."""

    def __init__(
        self, *, client_id: str = "test-client-id", client_secret: str = "test-client-secret"
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.server = StubServer()
        self.url = self.server.url
        self.auth_url = f"{self.url}/oauth2"
        self.helix_url = f"{self.url}/helix"
        self.users: dict[str, dict] = {}
        self.live: dict[str, int] = {}
        self.clips: dict[str, list[dict]] = {}
        self.subscriptions: dict[str, dict] = {}
        #: when True, user tokens from a code exchange are refused until refreshed
        self.expire_exchanged_tokens = False
        #: the Ratelimit-Remaining value sent with Helix answers
        self.ratelimit_remaining = 799
        self._codes: dict[str, str] = {}
        self._valid: dict[str, str | None] = {}
        self._refresh: dict[str, str] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._routes()

    # -- set-up -------------------------------------------------------------------------
    def add_user(self, user_id: str, login: str, *, display_name: str | None = None) -> str:
        """Register a Twitch user; returns an authorization code that signs them in."""
        self.users[user_id] = {
            "id": user_id,
            "login": login,
            "display_name": display_name or login,
            "type": "",
            "broadcaster_type": "affiliate",
            "description": "",
            "profile_image_url": f"https://static-cdn.jtvnw.net/{login}.png",
            "offline_image_url": "",
            "view_count": 0,
            "created_at": "2016-12-14T20:32:28Z",
        }
        code = f"code-{user_id}-{uuid.uuid4().hex[:8]}"
        self._codes[code] = user_id
        return code

    def expire(self, access_token: str) -> None:
        """Make Helix answer 401 to this token from now on."""
        with self._lock:
            self._valid.pop(access_token, None)

    def close(self) -> None:
        """Stop serving."""
        self.server.close()

    # -- recorded traffic ---------------------------------------------------------------
    def chat_messages(self) -> list[dict]:
        """Bodies of every ``POST /helix/chat/messages`` received."""
        return [r.json for r in self.server.received("POST", r"/helix/chat/messages")]

    def token_grants(self) -> list[dict]:
        """Form bodies of every ``POST /oauth2/token`` (secrets included: tests only)."""
        return [_form(r) for r in self.server.received("POST", r"/oauth2/token")]

    # -- tokens -------------------------------------------------------------------------
    def _issue(self, user_id: str | None, *, valid: bool = True) -> dict:
        number = next(self._counter)
        access = f"{'user-' + user_id if user_id else 'app'}-token-{number}"
        with self._lock:
            if valid:
                self._valid[access] = user_id
        answer = {"access_token": access, "expires_in": 14400, "token_type": "bearer"}
        if user_id is not None:
            refresh = f"refresh-{user_id}-{number}"
            with self._lock:
                self._refresh[refresh] = user_id
            answer["refresh_token"] = refresh
            answer["scope"] = ["chat:read", "user:read:chat", "user:write:chat"]
        return answer

    def _token(self, request: Recorded):
        form = _form(request)
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return 403, {"status": 403, "message": "invalid client secret"}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._issue(None)
        if grant == "authorization_code":
            user_id = self._codes.pop(form.get("code", ""), None)
            if user_id is None:
                return 400, {"status": 400, "message": "Invalid authorization code"}
            return self._issue(user_id, valid=not self.expire_exchanged_tokens)
        if grant == "refresh_token":
            with self._lock:
                user_id = self._refresh.get(form.get("refresh_token", ""))
            if user_id is None:
                return 400, {"status": 400, "message": "Invalid refresh token"}
            return self._issue(user_id)
        return 400, {"status": 400, "message": "unsupported grant_type"}

    def _caller(self, request: Recorded) -> tuple[bool, str | None]:
        """(authorized, user id of a user token)."""
        if request.headers.get("Client-Id") != self.client_id:
            return False, None
        bearer = request.headers.get("Authorization", "")
        if not bearer.startswith("Bearer "):
            return False, None
        token = bearer[len("Bearer ") :]
        with self._lock:
            if token not in self._valid:
                return False, None
            return True, self._valid[token]

    def _helix(self, handler):
        def answer(request: Recorded):
            authorized, user_id = self._caller(request)
            headers = {
                "Ratelimit-Limit": "800",
                "Ratelimit-Remaining": str(self.ratelimit_remaining),
                "Ratelimit-Reset": str(int(time.time()) + 60),
            }
            if not authorized:
                return (*_UNAUTHORIZED, headers)
            result = handler(request, user_id)
            if isinstance(result, tuple):
                status, body = result
                return status, body, headers
            return 200, result, headers

        return answer

    # -- Helix endpoints ----------------------------------------------------------------
    def _users(self, request, user_id):
        query = _query(request)
        ids, logins = query.get("id", []), query.get("login", [])
        if not ids and not logins:
            return {"data": [self.users[user_id]] if user_id in self.users else []}
        found = [u for u in self.users.values() if u["id"] in ids or u["login"] in logins]
        return {"data": found}

    def _channels(self, request, user_id):
        wanted = _query(request).get("broadcaster_id", [])
        return {
            "data": [
                {
                    "broadcaster_id": u["id"],
                    "broadcaster_login": u["login"],
                    "broadcaster_name": u["display_name"],
                    "broadcaster_language": "en",
                    "game_id": "509658",
                    "game_name": "Just Chatting",
                    "title": "stream",
                    "delay": 0,
                    "tags": [],
                }
                for u in self.users.values()
                if u["id"] in wanted
            ]
        }

    def _clips(self, request, user_id):
        broadcaster = (_query(request).get("broadcaster_id") or [""])[0]
        return {"data": list(self.clips.get(broadcaster, [])), "pagination": {}}

    def _streams(self, request, user_id):
        wanted = _query(request).get("user_id", [])
        return {
            "data": [
                {
                    "id": f"stream-{uid}",
                    "user_id": uid,
                    "user_login": self.users.get(uid, {}).get("login", uid),
                    "type": "live",
                    "viewer_count": viewers,
                }
                for uid, viewers in self.live.items()
                if uid in wanted
            ],
            "pagination": {},
        }

    def _create_subscription(self, request, user_id):
        body = request.json or {}
        for existing in self.subscriptions.values():
            if existing["type"] == body.get("type") and existing["condition"] == body.get(
                "condition"
            ):
                return 409, {"error": "Conflict", "status": 409, "message": "already exists"}
        subscription = {
            "id": str(uuid.uuid4()),
            "status": "webhook_callback_verification_pending",
            "type": body.get("type"),
            "version": body.get("version"),
            "condition": body.get("condition") or {},
            "created_at": "2024-01-01T00:00:00.000000000Z",
            "transport": {
                "method": "webhook",
                "callback": (body.get("transport") or {}).get("callback"),
            },
            "cost": 0,
        }
        self.subscriptions[subscription["id"]] = subscription
        return 202, {"data": [subscription], "total": 1, "total_cost": 0, "max_total_cost": 10000}

    def _list_subscriptions(self, request, user_id):
        query = _query(request)
        wanted_user = (query.get("user_id") or [None])[0]
        found = [
            s
            for s in self.subscriptions.values()
            if wanted_user is None or condition_broadcaster(s["condition"]) == wanted_user
        ]
        return {"data": found, "total": len(found), "pagination": {}}

    def _delete_subscription(self, request, user_id):
        wanted = (_query(request).get("id") or [""])[0]
        if self.subscriptions.pop(wanted, None) is None:
            return 404, {"error": "Not Found", "status": 404, "message": "not found"}
        return 204, b""

    def _chat_message(self, request, user_id):
        return {"data": [{"message_id": str(uuid.uuid4()), "is_sent": True, "drop_reason": None}]}

    def _no_content(self, request, user_id):
        return 204, b""

    def _routes(self) -> None:
        route = self.server.route
        route("POST", r"/oauth2/token", self._token)
        route("GET", r"/helix/users", self._helix(self._users))
        route("GET", r"/helix/channels", self._helix(self._channels))
        route("GET", r"/helix/clips", self._helix(self._clips))
        route("GET", r"/helix/streams", self._helix(self._streams))
        route("POST", r"/helix/eventsub/subscriptions", self._helix(self._create_subscription))
        route("GET", r"/helix/eventsub/subscriptions", self._helix(self._list_subscriptions))
        route("DELETE", r"/helix/eventsub/subscriptions", self._helix(self._delete_subscription))
        route("POST", r"/helix/chat/messages", self._helix(self._chat_message))
        route("POST", r"/helix/chat/shoutouts", self._helix(self._no_content))
        route("DELETE", r"/helix/moderation/chat", self._helix(self._no_content))


class EventSubSender:
    """Posts EventSub webhook messages to a collector, signed like Twitch does."""

    def __init__(self, url: str, secret: str, *, http: requests.Session | None = None):
        self.url = url
        self.secret = secret
        self._http = http or requests.Session()

    def send(
        self,
        payload: dict | bytes,
        *,
        message_type: str = eventsub.NOTIFICATION,
        message_id: str | None = None,
        timestamp: str | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST one message; ``payload`` is the JSON body (or raw bytes, sent as is)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        subscription = payload.get("subscription", {}) if isinstance(payload, dict) else {}
        headers = eventsub.signed_headers(
            secret if secret is not None else self.secret,
            body,
            message_type=message_type,
            subscription_type=subscription.get("type", "channel.follow"),
            subscription_version=str(subscription.get("version", "1")),
            message_id=message_id,
            timestamp=timestamp,
        )
        return self._http.post(self.url, data=body, headers=headers, timeout=timeout)
