"""Helix client, OAuth client, token providers and token encryption (waddlebot.twitch)."""

from __future__ import annotations

import datetime
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from waddlebot.settings import Secret
from waddlebot.testkit import StubServer, free_port
from waddlebot.twitch.eventsub import SubscriptionSpec
from waddlebot.twitch.helix import HelixClient, HelixError, split_message
from waddlebot.twitch.oauth import (
    AppTokenProvider,
    OAuthClient,
    OAuthError,
    TokenGrant,
    UserTokenProvider,
)
from waddlebot.twitch.testing import TwitchStub
from waddlebot.twitch.tokens import TokenCipher, TokenDecryptError


@pytest.fixture(scope="module")
def _stub():
    stub = TwitchStub()
    yield stub
    stub.close()


@pytest.fixture
def twitch(_stub):
    """The module's Twitch stand-in, with nothing recorded yet."""
    _stub.server.clear()
    _stub.subscriptions.clear()
    _stub.live.clear()
    _stub.clips.clear()
    return _stub


def _oauth(stub: TwitchStub) -> OAuthClient:
    return OAuthClient(stub.client_id, Secret(stub.client_secret), auth_base_url=stub.auth_url)


def _helix(stub: TwitchStub, **kwargs) -> HelixClient:
    return HelixClient(
        client_id=stub.client_id,
        app_token=AppTokenProvider(_oauth(stub)),
        api_base_url=stub.helix_url,
        bot_user_id="999",
        **kwargs,
    )


class _FakeToken:
    bucket = "app"

    def access_token(self):
        return "t"

    def refresh(self):
        return "t"


def _raw_client(server: StubServer, **kwargs):
    slept: list[float] = []
    now = [1000.0]

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    client = HelixClient(
        client_id="cid",
        app_token=_FakeToken(),
        api_base_url=server.url,
        sleep=sleep,
        clock=lambda: now[0],
        **kwargs,
    )
    return client, slept, now


# -- message splitting ------------------------------------------------------------------


def test_split_message_keeps_words_whole_and_under_the_limit():
    assert split_message("hello world") == ["hello world"]
    assert split_message("a" * 500) == ["a" * 500]
    words = " ".join(f"word{i:03d}" for i in range(150))
    chunks = split_message(words)
    assert len(chunks) == 3
    assert all(len(c) <= 500 for c in chunks)
    assert " ".join(chunks) == words
    assert all(not c.startswith(" ") and not c.endswith(" ") for c in chunks)


def test_split_message_cuts_a_word_longer_than_the_limit():
    chunks = split_message("hi " + "x" * 1200 + " bye")
    assert chunks == ["hi", "x" * 500, "x" * 500, "x" * 200 + " bye"]
    assert split_message("   ") == []


# -- Helix calls against the Twitch stand-in -------------------------------------------------


def test_app_token_client_id_and_users(twitch):
    twitch.add_user("1337", "cooler_user")
    helix = _helix(twitch)
    users = helix.get_users(logins=["cooler_user"])
    assert [u["id"] for u in users] == ["1337"]
    assert helix.get_users(ids=["1337"])[0]["login"] == "cooler_user"
    grants = twitch.token_grants()
    assert [g["grant_type"] for g in grants] == ["client_credentials"]
    call = twitch.server.received("GET", "/helix/users")[0]
    assert call.headers["Client-Id"] == twitch.client_id
    assert call.headers["Authorization"].startswith("Bearer app-token-")


def test_a_401_refreshes_the_token_and_retries_once(twitch):
    twitch.add_user("1337", "cooler_user")
    helix = _helix(twitch)
    helix.get_users(ids=["1337"])
    first = twitch.server.received("GET", "/helix/users")[0].headers["Authorization"][7:]
    twitch.expire(first)
    assert helix.get_users(ids=["1337"])[0]["id"] == "1337"
    calls = twitch.server.received("GET", "/helix/users")
    assert len(calls) == 3
    assert calls[-1].headers["Authorization"][7:] != first
    assert [g["grant_type"] for g in twitch.token_grants()] == ["client_credentials"] * 2


def test_a_second_401_is_an_error_not_a_loop():
    server = StubServer()
    server.route("GET", r"/users", (401, {"message": "Invalid OAuth token"}))
    client, _, _ = _raw_client(server)
    with pytest.raises(HelixError) as raised:
        client.get_users(ids=["1"])
    assert raised.value.status == 401
    assert len(server.received()) == 2
    server.close()


def test_exhausted_budget_waits_until_the_reset():
    server = StubServer()
    server.route(
        "GET",
        r"/streams",
        lambda r: (200, {"data": []}, {"Ratelimit-Remaining": "0", "Ratelimit-Reset": "1012"}),
    )
    client, slept, _ = _raw_client(server)
    client.get_streams(user_ids=["1"])
    assert slept == []
    client.get_streams(user_ids=["1"])
    assert slept == [pytest.approx(12.0)]
    server.close()


def test_a_429_is_retried_after_the_reset():
    server = StubServer()
    answers = iter(
        [
            (429, {"message": "Too Many Requests"}, {"Ratelimit-Reset": "1003"}),
            (200, {"data": [{"id": "clip1"}]}, {"Ratelimit-Remaining": "799"}),
        ]
    )
    server.route("GET", r"/clips", lambda r: next(answers))
    client, slept, _ = _raw_client(server)
    assert client.get_clips("1337", first=500)[0]["id"] == "clip1"
    assert slept == [pytest.approx(3.0)]
    query = parse_qs(server.received()[0].query)
    assert query["first"] == ["100"]
    server.close()


def test_send_chat_message_splits_and_posts_as_the_bot(twitch):
    helix = _helix(twitch)
    text = " ".join(["lorem"] * 200)
    results = helix.send_chat_message("1337", text, reply_parent_message_id="m-1")
    assert len(results) == 3 and all(r["is_sent"] for r in results)
    bodies = twitch.chat_messages()
    assert [b["broadcaster_id"] for b in bodies] == ["1337"] * 3
    assert {b["sender_id"] for b in bodies} == {"999"}
    assert " ".join(b["message"] for b in bodies) == text
    assert bodies[0]["reply_parent_message_id"] == "m-1"
    assert "reply_parent_message_id" not in bodies[1]
    no_bot = HelixClient(client_id="c", app_token=_FakeToken(), api_base_url=twitch.helix_url)
    with pytest.raises(ValueError, match="sender_id"):
        no_bot.send_chat_message("1337", "hi")


def test_eventsub_subscriptions_create_list_conflict_delete(twitch):
    helix = _helix(twitch)
    spec = SubscriptionSpec("channel.cheer", "1", {"broadcaster_user_id": "1337"})
    created = helix.create_eventsub_subscription(
        spec, callback="https://bot.example/webhooks/twitch/eventsub", secret="s3cret-webhook"
    )
    assert created["status"] == "webhook_callback_verification_pending"
    sent = twitch.server.received("POST", "/helix/eventsub/subscriptions")[0].json
    assert sent["transport"]["secret"] == "s3cret-webhook"
    with pytest.raises(HelixError) as conflict:
        helix.create_eventsub_subscription(spec, callback="https://x", secret="s3cret-webhook")
    assert conflict.value.status == 409
    assert [s["id"] for s in helix.list_eventsub_subscriptions(user_id="1337")] == [created["id"]]
    helix.delete_eventsub_subscription(created["id"])
    assert helix.list_eventsub_subscriptions() == []


def test_channel_clips_streams_shoutout_and_delete(twitch):
    twitch.add_user("1337", "cooler_user")
    twitch.live["1337"] = 42
    twitch.clips["1337"] = [{"id": "clip-a"}]
    helix = _helix(twitch)
    assert helix.get_channel("1337")["game_name"] == "Just Chatting"
    assert helix.get_channel("404") is None
    assert helix.is_live("1337") and not helix.is_live("7")
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)
    assert helix.get_clips("1337", started_at=since, first=5)[0]["id"] == "clip-a"
    query = parse_qs(twitch.server.received("GET", "/helix/clips")[0].query)
    assert query["started_at"][0].endswith("Z") and query["first"] == ["5"]
    user = UserTokenProvider(_oauth(twitch), _grant_for(twitch, "1337"), user_id="1337")
    helix.send_shoutout("1337", "1234", "1337", token=user)
    helix.delete_chat_message("1337", "1337", "msg-9", token=user)
    shout = parse_qs(twitch.server.received("POST", "/helix/chat/shoutouts")[0].query)
    assert shout == {
        "from_broadcaster_id": ["1337"],
        "to_broadcaster_id": ["1234"],
        "moderator_id": ["1337"],
    }
    deleted = parse_qs(twitch.server.received("DELETE", "/helix/moderation/chat")[0].query)
    assert deleted["message_id"] == ["msg-9"]


def _grant_for(twitch: TwitchStub, user_id: str) -> TokenGrant:
    code = twitch.add_user(user_id, f"user{user_id}")
    return _oauth(twitch).exchange_code(code, redirect_uri="https://bot.example/cb")


# -- OAuth and user tokens ---------------------------------------------------------------


def test_authorize_url_has_everything_twitch_needs():
    oauth = OAuthClient("cid", Secret("sec"), auth_base_url="https://id.example/oauth2")
    url = oauth.authorize_url(redirect_uri="https://bot.example/cb", state="st", scopes=["a", "b"])
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://id.example/oauth2/authorize"
    assert parse_qs(parts.query) == {
        "client_id": ["cid"],
        "redirect_uri": ["https://bot.example/cb"],
        "response_type": ["code"],
        "scope": ["a b"],
        "state": ["st"],
    }


def test_code_exchange_and_errors(twitch):
    oauth = _oauth(twitch)
    code = twitch.add_user("1337", "cooler_user")
    grant = oauth.exchange_code(code, redirect_uri="https://bot.example/cb")
    assert grant.access_token.startswith("user-1337-") and grant.refresh_token
    assert "access_token" not in repr(grant) and grant.access_token not in repr(grant)
    form = twitch.token_grants()[-1]
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == "https://bot.example/cb"
    with pytest.raises(OAuthError) as refused:
        oauth.exchange_code(code, redirect_uri="https://bot.example/cb")
    assert refused.value.status == 400 and not refused.value.unreachable
    offline = OAuthClient("c", Secret("s"), auth_base_url=f"http://127.0.0.1:{free_port()}/o")
    with pytest.raises(OAuthError) as down:
        offline.client_credentials()
    assert down.value.unreachable
    assert "s" not in str(down.value).split("failed")[-1]


def test_user_token_refreshes_before_expiry_and_reports_it(twitch):
    grant = _grant_for(twitch, "1337")
    stale = TokenGrant(grant.access_token, grant.refresh_token, expires_at=time.time() + 30)
    seen: list[TokenGrant] = []
    provider = UserTokenProvider(_oauth(twitch), stale, user_id="1337", on_refresh=seen.append)
    fresh = provider.access_token()
    assert fresh != grant.access_token and seen and seen[0].access_token == fresh
    assert provider.access_token() == fresh
    assert twitch.token_grants()[-1]["grant_type"] == "refresh_token"


def test_a_refused_refresh_is_reported(twitch):
    refused: list[OAuthError] = []
    provider = UserTokenProvider(
        _oauth(twitch),
        TokenGrant("gone", "not-a-refresh-token", expires_at=time.time() - 1),
        on_refused=refused.append,
    )
    with pytest.raises(OAuthError):
        provider.access_token()
    assert refused and refused[0].status == 400


def test_token_cipher_round_trip_and_wrong_key():
    cipher = TokenCipher("app-secret")
    stored = cipher.encrypt("user-token-1")
    assert stored != "user-token-1" and "user-token-1" not in stored
    assert cipher.decrypt(stored) == "user-token-1"
    assert cipher.encrypt(None) is None and cipher.decrypt(None) is None
    with pytest.raises(TokenDecryptError):
        TokenCipher("another-secret").decrypt(stored)
    assert "app-secret" not in repr(cipher)
