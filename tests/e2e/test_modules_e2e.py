"""Aliases and shoutouts end to end: router, alias and shoutout apps in one real process.

Everything goes over HTTP the way it does in production: chat events into
``/api/router/events``, the router calling the modules, the alias module sending the
expanded line back through the router, the shoutout module asking a local Helix
stub (users, channels, clips, streams, shoutouts, OAuth), chat replies pushed to a
stub collector and overlay media read from ``/api/router/responses/recent``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
import requests

from waddlebot.testkit import FleetProcess, StubServer, chat_event, platform_event

pytestmark = pytest.mark.e2e

APPS = ["router_module", "alias_interaction_module", "shoutout_interaction_module"]
BOT_USER_ID = "900"
APP_TOKEN = "app-token"
BOT_TOKEN = "bot-token"
COLLECTOR_PLATFORMS = ("console", "twitch", "discord")
NOW = "2026-01-01T00:00:00Z"

#: the Twitch accounts the Helix stub knows
TWITCH_USERS = {
    "bob": {
        "id": "101",
        "login": "bob",
        "display_name": "Bob",
        "profile_image_url": "https://static.example/bob.png",
        "description": "speedruns",
        "game_name": "Celeste",
        "clips": [
            {"id": "bob-plain-1", "is_featured": False},
            {"id": "bob-featured", "is_featured": True},
            {"id": "bob-plain-2", "is_featured": False},
        ],
    },
    "carol": {
        "id": "102",
        "login": "carol",
        "display_name": "Carol",
        "profile_image_url": "https://static.example/carol.png",
        "description": "",
        "game_name": "",
        "clips": [],
    },
    "dave": {
        "id": "103",
        "login": "dave",
        "display_name": "Dave",
        "profile_image_url": "https://static.example/dave.png",
        "description": "",
        "game_name": "Tetris",
        "clips": [{"id": "dave-1", "is_featured": False}],
    },
}


def _clip(owner: dict, spec: dict) -> dict:
    return {
        "id": spec["id"],
        "url": f"https://clips.twitch.tv/{spec['id']}",
        "embed_url": f"https://clips.twitch.tv/embed?clip={spec['id']}",
        "broadcaster_id": owner["id"],
        "title": f"clip {spec['id']}",
        "thumbnail_url": f"https://static.example/{spec['id']}.jpg",
        "duration": 30.0,
        "view_count": 7,
        "created_at": NOW,
        "is_featured": spec["is_featured"],
    }


def helix_stub(live: set[str]) -> StubServer:
    """Helix (users, channels, clips, streams, shoutouts) and id.twitch.tv OAuth."""
    stub = StubServer()
    by_id = {u["id"]: u for u in TWITCH_USERS.values()}

    def query(request) -> dict[str, list[str]]:
        return parse_qs(request.query)

    def token(request):
        form = parse_qs(request.body.decode())
        grant = form.get("grant_type", [""])[0]
        if grant == "client_credentials":
            return {"access_token": APP_TOKEN, "expires_in": 3600, "token_type": "bearer"}
        if grant == "refresh_token" and form.get("refresh_token") == ["bot-refresh"]:
            return {
                "access_token": BOT_TOKEN,
                "refresh_token": "bot-refresh",
                "expires_in": 3600,
                "token_type": "bearer",
            }
        return 400, {"status": 400, "message": "Invalid refresh token"}

    def authorized(request, wanted: str) -> bool:
        return request.headers.get("Authorization") == f"Bearer {wanted}"

    def users(request):
        if not authorized(request, APP_TOKEN):
            return 401, {"message": "Invalid OAuth token"}
        asked = query(request)
        if asked.get("login") == ["broken"]:
            return 503, {"message": "Service Unavailable"}
        found = [
            TWITCH_USERS[name.lower()]
            for name in asked.get("login", [])
            if name.lower() in TWITCH_USERS
        ]
        found += [by_id[i] for i in asked.get("id", []) if i in by_id]
        fields = ("id", "login", "display_name", "profile_image_url", "description")
        return {"data": [{k: u[k] for k in fields} for u in found]}

    def channels(request):
        user = by_id.get(query(request).get("broadcaster_id", [""])[0])
        if user is None:
            return {"data": []}
        return {"data": [{"broadcaster_id": user["id"], "game_name": user["game_name"]}]}

    def clips(request):
        asked = query(request)
        assert asked.get("started_at"), "clips must be limited to the last days"
        user = by_id.get(asked.get("broadcaster_id", [""])[0])
        return {"data": [_clip(user, c) for c in user["clips"]] if user else []}

    def streams(request):
        ids = query(request).get("user_id", [])
        return {"data": [{"user_id": i, "type": "live"} for i in ids if i in live]}

    def shoutouts(request):
        if not authorized(request, BOT_TOKEN):
            return 401, {"message": "Missing User OAUTH Token"}
        return 204, b""

    stub.route("POST", r"/oauth2/token", token)
    stub.route("GET", r"/helix/users", users)
    stub.route("GET", r"/helix/channels", channels)
    stub.route("GET", r"/helix/clips", clips)
    stub.route("GET", r"/helix/streams", streams)
    stub.route("POST", r"/helix/chat/shoutouts", shoutouts)
    return stub


class Fleet:
    """The running fleet, its collector stub and chat helpers."""

    def __init__(self, process: FleetProcess, collector: StubServer, helix: StubServer | None):
        self.process = process
        self.collector = collector
        self.helix = helix

    def event(self, event: dict) -> dict:
        """POST one event; the router must accept it."""
        answer = self.process.post("/api/router/events", event)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def say(
        self,
        text: str,
        *,
        channel: str,
        platform: str = "twitch",
        user: str = "mia",
        roles: list[str] | None = None,
    ) -> dict:
        """A chat line in ``platform:channel:channel``."""
        return self.event(
            chat_event(text, platform=platform, channel=channel, user=user, roles=roles or [])
        )

    def mod(self, text: str, *, channel: str, platform: str = "twitch") -> dict:
        """A chat line by the moderator ``mia``."""
        return self.say(text, channel=channel, platform=platform, roles=["moderator"])

    def ask(
        self,
        text: str,
        *,
        channel: str,
        platform: str = "twitch",
        user: str = "mia",
        roles: tuple[str, ...] = ("moderator",),
    ) -> str:
        """Say something and return the one chat reply it gets (replies never overlap)."""
        entity_id = f"{platform}:{channel}:{channel}"
        before = len(self.replies(entity_id, 0))
        self.say(text, channel=channel, platform=platform, user=user, roles=list(roles))
        return self.replies(entity_id, before + 1)[before]

    def replies(self, entity_id: str, count: int, *, timeout: float = 5.0) -> list[str]:
        """Wait until ``count`` chat replies reached the collector for ``entity_id``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                r.json["chat_message"]
                for r in self.collector.received("POST", r"/api/[a-z]+/responses")
                if isinstance(r.json, dict) and r.json.get("entity_id") == entity_id
            ]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} replies in {entity_id}, got {found}")
            time.sleep(0.02)

    def responses(self, entity_id: str, action: str | None = None) -> list[dict]:
        """Responses the router recorded for an entity (newest first)."""
        params = {"entity_id": entity_id, "per_page": 500}
        if action:
            params["response_action"] = action
        answer = self.process.get("/api/router/responses/recent", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    def put(self, path: str, body: dict) -> requests.Response:
        """PUT JSON with the service key."""
        return requests.put(
            self.process.url + path, json=body, headers=self.process.headers, timeout=10
        )

    def delete(self, path: str, **params) -> requests.Response:
        """DELETE with the service key."""
        return requests.delete(
            self.process.url + path, params=params, headers=self.process.headers, timeout=10
        )

    def aliases(self, entity_id: str) -> dict:
        """The alias module's management list for an entity."""
        answer = self.process.get("/api/alias/aliases", params={"entity_id": entity_id})
        assert answer.status_code == 200, answer.text
        return {item["name"]: item for item in answer.json()["items"]}

    def shoutouts_sent(self, to_id: str) -> list:
        """Twitch /shoutout calls the Helix stub received for one target."""
        return [
            r
            for r in self.helix.received("POST", r"/helix/chat/shoutouts")
            if parse_qs(r.query).get("to_broadcaster_id") == [to_id]
        ]


def _register_collectors(process: FleetProcess, collector: StubServer) -> None:
    for platform in COLLECTOR_PLATFORMS:
        process.register(f"{platform}-collector-stub", collector.url, collector_for=platform)


def _wait_registered(process: FleetProcess, modules: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for module in modules:
        while True:
            answer = process.get("/api/router/commands", params={"module": module})
            if answer.status_code == 200 and answer.json()["items"]:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{module} never registered:\n{process.logs()[-3000:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    """Router + alias + shoutout with Twitch credentials pointed at the Helix stub."""
    helix = helix_stub(live={"7001", "7005"})
    collector = StubServer()
    collector.route("POST", r"/api/(?P<platform>[a-z]+)/responses", {"ok": True})
    env = {
        "TWITCH_APP_ID": "test-app",
        "TWITCH_APP_SECRET": "test-secret",
        "TWITCH_API_BASE_URL": f"{helix.url}/helix",
        "TWITCH_AUTH_BASE_URL": f"{helix.url}/oauth2",
        "TWITCH_BOT_USER_ID": BOT_USER_ID,
        "TWITCH_BOT_REFRESH_TOKEN": "bot-refresh",
        "ROUTER_DEFAULT_RATE_LIMIT": "1000",
    }
    process = FleetProcess(APPS, env=env, data_dir=tmp_path_factory.mktemp("modules-e2e"))
    process.start()
    try:
        _register_collectors(process, collector)
        _wait_registered(process, ["alias", "shoutout"])
        yield Fleet(process, collector, helix)
    finally:
        process.stop()
        collector.close()
        helix.close()


def _channel() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


# -- aliases through the router ---------------------------------------------------------------
def test_alias_runs_the_shoutout_and_never_lifts_permissions(fleet):
    entity = "twitch:7001:7001"
    assert fleet.ask('!alias add !hi "!so {arg1}"', channel="7001") == "Added !hi → !so {arg1}"

    assert fleet.ask("!hi bob", channel="7001") == (
        "Go check out Bob at https://twitch.tv/bob — they were last playing Celeste!"
    )
    media = fleet.responses(entity, "media")
    assert len(media) == 1
    assert media[0]["media_type"] == "clip"
    # the featured clip wins over the others
    assert media[0]["media_url"] == "https://clips.twitch.tv/embed?clip=bob-featured"
    assert media[0]["module_name"] == "shoutout"
    sent = fleet.shoutouts_sent("101")
    assert len(sent) == 1
    assert parse_qs(sent[0].query) == {
        "from_broadcaster_id": ["7001"],
        "to_broadcaster_id": ["101"],
        "moderator_id": [BOT_USER_ID],
    }

    # a plain member gets !so's own refusal: the alias runs !so as that member
    refusal = fleet.ask("!hi bob", channel="7001", user="nora", roles=())
    assert refusal == "@nora, !so needs moderator or higher here."
    assert len(fleet.responses(entity, "media")) == 1

    # within Twitch's cooldown the chat and the clip still go out, /shoutout does not
    assert fleet.ask("!so bob", channel="7001").startswith("Go check out Bob")
    assert len(fleet.responses(entity, "media")) == 2
    latest_chat = fleet.responses(entity, "chat")[0]
    assert latest_chat["response_data"]["response_data"]["twitch_shoutout"] == "cooldown_target"
    assert len(fleet.shoutouts_sent("101")) == 1

    stats = fleet.aliases(entity)["hi"]
    assert stats["usage_count"] == 2
    assert stats["last_used_by"] == "nora"
    assert stats["last_used"]


def test_members_list_aliases_but_cannot_add_them(fleet):
    channel = _channel()
    member = dict(channel=channel, user="nora", roles=())
    assert fleet.ask('!alias add !x "!so {arg1}"', **member) == (
        "@nora, sorry — only moderators and above can add or remove aliases."
    )
    assert "only moderators" in fleet.ask("!alias remove !x", **member)
    assert fleet.ask("!alias list", **member).startswith("There are no aliases here yet")
    assert fleet.aliases(f"twitch:{channel}:{channel}") == {}

    assert fleet.ask('!alias add !x "!so {arg1}"', channel=channel) == "Added !x → !so {arg1}"
    assert fleet.ask("!alias list", **member) == "Aliases here (1): !x → !so {arg1}"


def test_alias_loops_and_deep_chains_are_refused(fleet):
    channel = _channel()
    entity = f"console:{channel}:{channel}"
    here = dict(channel=channel, platform="console")
    assert fleet.ask('!alias add !a "!so {arg1}"', **here) == "Added !a → !so {arg1}"
    assert fleet.ask('!alias add !b "!a {arg1}"', **here) == "Added !b → !a {arg1}"
    assert fleet.ask('!alias add !a "!b {arg1}"', **here) == (
        "@mia, that would make a loop (!a → !b → !a)."
    )
    assert fleet.ask('!alias add !c "!c"', **here) == "@mia, that would make a loop (!c → !c)."
    assert fleet.aliases(entity)["a"]["command"] == "!so {arg1}"
    assert "c" not in fleet.aliases(entity)

    for depth, previous in ((3, "b"), (4, "d3"), (5, "d4")):  # !d5 → !d4 → !d3 → !b → !a
        added = fleet.ask(f'!alias add !d{depth} "!{previous} {{arg1}}"', **here)
        assert added == f"Added !d{depth} → !{previous} {{arg1}}"
    assert fleet.ask('!alias add !d6 "!d5 {arg1}"', **here) == (
        "@mia, an alias may lead through at most 5 aliases."
    )

    assert fleet.ask("!d5 dave", **here) == (
        "Go check out Dave at https://twitch.tv/dave — they were last playing Tetris!"
    )
    stats = fleet.aliases(entity)
    assert [stats[n]["usage_count"] for n in ("a", "b", "d3", "d4", "d5")] == [1] * 5


def test_quoting_survives_the_round_trip_through_the_router(fleet):
    echo = StubServer()
    echo.route("POST", r"/echo", {})
    try:
        answer = fleet.process.post(
            "/api/modules/register",
            {
                "module_name": "echo-e2e",
                "module_type": "interaction",
                "core": True,
                "commands": [{"command": "echo", "location_url": f"{echo.url}/echo"}],
            },
        )
        assert answer.status_code in (200, 201), answer.text
        channel = _channel()
        fleet.mod('!alias add !e "!echo {all_args} | \\"{arg2}\\" | {user}"', channel=channel)
        fleet.mod('!alias add !f "!echo {args}"', channel=channel)
        fleet.mod("!alias add !g \"!echo x{arg3}y '{arg1}' {arg3}\"", channel=channel)
        fleet.mod('!e "two words" "it\'s $HOME"', channel=channel)
        fleet.mod('!f "a b" c', channel=channel)
        fleet.mod('!g "it\'s"', channel=channel)
        calls = [r.json for r in echo.wait_for(3, method="POST", path="/echo")]
        assert calls[0]["args"] == ["two words", "it's $HOME", "|", "it's $HOME", "|", "mia"]
        assert calls[1]["args"] == ["a b", "c"]
        assert calls[2]["args"] == ["xy", "it's"]
        assert calls[0]["metadata"]["alias"] == "!e"
        assert calls[0]["user"]["role"] == "moderator"
    finally:
        echo.close()


def test_bad_input_gets_clear_replies_and_nothing_is_stored(fleet):
    channel = _channel()
    entity = f"console:{channel}:{channel}"
    long_text = "x" * 3900
    attempts = [
        ("!alias add", 'Usage: !alias add !name "<command>"'),
        ("!alias", "Aliases: !alias add !name"),
        ('!alias add !héllo "!so {arg1}"', "'!héllo' is not a valid name"),
        ('!alias add !日本 "!so {arg1}"', "is not a valid name"),
        ('!alias add !x "!nosuchcommand {arg1}"', "!nosuchcommand is not a command here"),
        ('!alias add !x "!so {arg1}', "a quote is not closed"),
        ('!alias add !so "!help"', "!so is already a command here"),
        ('!alias add !help "!so x"', "!help is already a command here"),
        (f'!alias add !long "!so {long_text}"', "an alias holds at most 500"),
        (f'!alias add !{long_text} "!so x"', "is not a valid name"),
        ('!alias add !x "hello {arg1}"', "is not a command"),
        ("!alias frobnicate", "I don't know !alias frobnicate"),
        (f"!so {long_text}", "is not a Twitch username"),
        ("!so", "Usage: !so <user>"),
        ("!so 日本語", "is not a Twitch username"),
    ]
    for text, expected in attempts:
        reply = fleet.ask(text, channel=channel, platform="console")
        assert expected in reply, (text[:60], reply)
        assert len(reply) < 300, reply
    assert fleet.aliases(entity) == {}

    # the router itself refuses more than 4000 characters, before any module sees them
    answer = fleet.process.post(
        "/api/router/events", chat_event("!alias add !x " + "y" * 10_000, channel=channel)
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "message_content"

    # a valid alias whose expansion would pass the router's limit says so, and stores no use
    fleet.ask('!alias add !big "!so {arg1} {args}"', channel=channel, platform="console")
    reply = fleet.ask(f"!big {long_text}", channel=channel, platform="console")
    assert reply.startswith("@mia, !big expands to 7805 characters")
    assert fleet.aliases(entity)["big"]["usage_count"] == 0


def test_alias_management_api(fleet):
    channel = _channel()
    entity = f"console:{channel}:{channel}"
    fleet.say("hello", channel=channel, platform="console")  # the router creates the entity
    api = fleet.process
    created = api.post(
        "/api/alias/aliases",
        {"entity_id": entity, "name": "!Lurk", "command": "!help", "created_by": "portal"},
    )
    assert created.status_code == 201, created.text
    alias = created.json()
    assert (alias["name"], alias["command"], alias["created_by"]) == ("lurk", "!help", "portal")

    for body, field in (
        ({"entity_id": entity, "name": "日本", "command": "!help"}, "name"),
        ({"entity_id": entity, "name": "x", "command": "!nope"}, "command"),
        ({"entity_id": entity, "name": "x"}, "command"),
        ({"name": "x", "command": "!help"}, "community_id"),
    ):
        refused = api.post("/api/alias/aliases", body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["field"] == field
    assert (
        api.post(
            "/api/alias/aliases",
            {"entity_id": "console:nope:nope", "name": "x", "command": "!help"},
        ).status_code
        == 404
    )
    assert requests.get(f"{api.url}/api/alias/aliases", timeout=10).status_code == 401

    listed = api.get("/api/alias/aliases", params={"community_id": alias["community_id"]})
    assert [a["name"] for a in listed.json()["items"]] == ["lurk"]

    reply = fleet.ask("!lurk", channel=channel, platform="console", user="zed", roles=())
    assert reply.startswith("Commands you can use here:")

    assert api.get(f"/api/alias/aliases/{alias['id']}").json()["usage_count"] == 1
    gone = fleet.delete("/api/alias/aliases", entity_id=entity, name="lurk")
    assert gone.status_code == 200, gone.text
    assert fleet.delete(f"/api/alias/aliases/{alias['id']}").status_code == 404
    # no community uses the name any more: the router forgets it
    commands = api.get("/api/router/commands", params={"module": "alias", "active": "true"})
    assert "lurk" not in [c["command"] for c in commands.json()["items"]]


# -- shoutouts ------------------------------------------------------------------------------------
def test_shoutout_without_clips_shows_the_profile_card(fleet):
    channel = _channel()
    entity = f"console:{channel}:{channel}"
    here = dict(channel=channel, platform="console")
    assert fleet.ask("!shoutout @carol", **here) == "Go check out Carol at https://twitch.tv/carol!"
    media = fleet.responses(entity, "media")
    assert [(m["media_type"], m["media_url"]) for m in media] == [
        ("image", "https://static.example/carol.png")
    ]
    assert media[0]["response_data"]["response_data"]["user"]["display_name"] == "Carol"

    assert fleet.ask("!so nobody_here", **here) == (
        "@mia, I can't find a Twitch user called nobody_here."
    )

    # Twitch failing still gives the plain shoutout, and says why there is no clip
    assert fleet.ask("!so broken", **here) == (
        "Go check out broken at https://twitch.tv/broken! "
        "(Twitch is not answering right now, so no clip this time.)"
    )
    assert len(fleet.responses(entity, "media")) == 1


def test_auto_shoutout_is_off_by_default_and_once_per_hour(fleet):
    entity = "twitch:7005:7005"
    raid = {"user": "101", "user_name": "bob", "metadata": {"viewers": 42}}
    fleet.event(platform_event("raid", channel="7005", **raid))
    assert fleet.responses(entity) == []

    answer = fleet.process.get(f"/api/shoutout/settings/{entity}")
    assert answer.json()["auto_shoutout"] is False
    put = fleet.put(
        f"/api/shoutout/settings/{entity}",
        {"auto_shoutout": True, "events": ["raid"], "updated_by": "mia"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["events"] == ["raid"]
    assert (
        fleet.put(f"/api/shoutout/settings/{entity}", {"events": ["party"]}).json()["error"][
            "field"
        ]
        == "events"
    )

    fleet.event(platform_event("raid", channel="7005", **raid))
    assert fleet.replies(entity, 1)[-1] == (
        "Thanks for the raid, Bob (42 viewers)! Go check out Bob at https://twitch.tv/bob — "
        "they were last playing Celeste!"
    )
    assert [m["media_type"] for m in fleet.responses(entity, "media")] == ["clip"]

    fleet.event(platform_event("raid", channel="7005", **raid))  # within the hour: skipped
    fleet.event(platform_event("follow", channel="7005", user="102", user_name="carol"))
    assert len(fleet.responses(entity)) == 2

    history = fleet.process.get("/api/shoutout/history", params={"entity_id": entity}).json()
    assert history["total"] == 1
    assert history["items"][0]["trigger_type"] == "raid"
    assert history["counts"] == [
        {"target_login": "bob", "count": 1, "last_at": history["items"][0]["created_at"]}
    ]


def test_custom_message_and_links_per_user(fleet):
    channel = _channel()
    entity = f"twitch:{channel}:{channel}"
    fleet.say("hi", channel=channel)
    path = f"/api/shoutout/users/Dave?entity_id={entity}"
    saved = fleet.put(
        path,
        {
            "custom_message": "{name} stacks {game} blocks at {url}",
            "links": ["https://dave.example"],
            "updated_by": "mia",
        },
    )
    assert saved.status_code == 201, saved.text
    assert fleet.put(path, {"links": ["ftp://x"]}).json()["error"]["field"] == "links"
    assert fleet.ask("!so dave", channel=channel) == (
        "Dave stacks Tetris blocks at https://twitch.tv/dave https://dave.example"
    )
    assert fleet.process.get(path).json()["username"] == "dave"
    listed = fleet.process.get("/api/shoutout/users", params={"entity_id": entity}).json()
    assert [(u["username"], u["auto_shoutout"]) for u in listed["items"]] == [("dave", True)]
    assert fleet.delete(path).status_code == 200
    assert fleet.process.get(path).status_code == 404


def test_discord_shoutout_is_chat_only(fleet):
    before = len(fleet.helix.requests)
    channel = _channel()
    entity = f"discord:{channel}:{channel}"
    reply = fleet.ask("!so bob", channel=channel, platform="discord")
    assert reply == "Go check out bob at https://twitch.tv/bob!"
    assert fleet.responses(entity, "media") == []
    assert len(fleet.helix.requests) == before


def test_shoutout_without_twitch_credentials_still_shouts(tmp_path_factory):
    collector = StubServer()
    collector.route("POST", r"/api/(?P<platform>[a-z]+)/responses", {"ok": True})
    env = {"TWITCH_APP_ID": "", "TWITCH_APP_SECRET": "", "ROUTER_DEFAULT_RATE_LIMIT": "1000"}
    process = FleetProcess(
        ["router_module", "shoutout_interaction_module"],
        env=env,
        data_dir=tmp_path_factory.mktemp("no-twitch"),
    )
    process.start()
    try:
        _register_collectors(process, collector)
        _wait_registered(process, ["shoutout"])
        fleet = Fleet(process, collector, None)
        assert fleet.ask("!so bob", channel="8001") == (
            "Go check out bob at https://twitch.tv/bob! (Shoutouts need Twitch credentials "
            "(TWITCH_APP_ID and TWITCH_APP_SECRET) to show the last game and a clip; ask the "
            "bot operator to set them.)"
        )
        assert fleet.responses("twitch:8001:8001", "media") == []
    finally:
        process.stop()
        collector.close()
