"""The portal's features over HTTP: !community in chat, module switches, roles, the
overlay event stream, test alerts, and the pages backed by the alias and shoutout modules.

The router, the portal and the alias and shoutout modules run as ``waddlebot up``
(embedded default) with a console collector stub and a stub module answering ``!clip``
with a media response.
"""

from __future__ import annotations

import email
import json
import re
import time
from html.parser import HTMLParser

import pytest
import requests

from waddlebot.testkit import FleetProcess, StubServer, chat_event

pytestmark = pytest.mark.e2e

DEMO = "console:demo:demo"
PASSWORD = "Rockhopper-Penguins-Jump-42"


class _Forms(HTMLParser):
    """Every <form> of a page with what a browser would send by default."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({})
        elif not self.forms:
            return
        elif tag == "input" and attrs.get("name") and attrs.get("type") != "submit":
            if attrs.get("type") != "checkbox" or "checked" in attrs:
                self.forms[-1].setdefault(attrs["name"], attrs.get("value") or "")
        elif tag == "select":
            self._select = attrs.get("name")
        elif tag == "option" and self._select:
            if "selected" in attrs or self._select not in self.forms[-1]:
                self.forms[-1][self._select] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def forms(html: str, name: str) -> list[dict]:
    """The default values of each form named ``name`` on a page."""
    parser = _Forms()
    parser.feed(html)
    return [f for f in parser.forms if f.get("_formname") == name]


def _wait(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Env:
    """The fleet, its stubs, and an owner logged in to the demo community."""

    def __init__(self, fleet, collector, module):
        self.fleet, self.collector, self.module = fleet, collector, module
        self.http = requests.Session()

    def chat(self, text: str, **kwargs) -> dict:
        kwargs.setdefault("roles", ["broadcaster"])
        answer = self.fleet.post("/api/router/events", chat_event(text, **kwargs))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def reply_to(self, text: str, **kwargs) -> str:
        """Send a chat line; the chat reply the router pushed for it."""
        before = len(self.collector.received("POST"))
        self.chat(text, **kwargs)
        found = _wait(lambda: self.collector.received("POST")[before:], what=f"a reply to {text!r}")
        return found[0].json["chat_message"]

    def page(self, path: str) -> requests.Response:
        return self.http.get(self.fleet.url + path, timeout=30)

    def submit(self, path: str, name: str, values: dict, index: int = 0) -> requests.Response:
        page = self.page(path)
        assert page.status_code == 200, (path, page.status_code)
        found = forms(page.text, name)
        assert found, f"no form {name} on {path}"
        return self.http.post(
            self.fleet.url + path,
            data={**found[index], **values},
            timeout=30,
            allow_redirects=False,
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    collector = StubServer()
    collector.route("POST", r"/api/console/responses", {"ok": True})
    module = StubServer()
    module.route(
        "POST",
        r"/clip",
        {
            "response_action": "media",
            "media_type": "video",
            "media_url": "https://clips.twitch.tv/SomeClip",
            "response_data": {"duration": 3},
        },
    )
    fleet = FleetProcess(
        [
            "router_module",
            "portal_module",
            "alias_interaction_module",
            "shoutout_interaction_module",
        ],
        data_dir=tmp_path_factory.mktemp("portal-features"),
        env={
            "ROUTER_COMMAND_CACHE_TTL": "30",
            "PORTAL_OVERLAY_HEARTBEAT_SECONDS": "0.3",
            "PORTAL_OVERLAY_STREAM_SECONDS": "6",
        },
    )
    fleet.start()
    try:
        for payload in (
            {
                "module_name": "console-features",
                "module_type": "collector",
                "platform": "console",
                "endpoint_url": collector.url,
                "commands": [],
            },
            {
                "module_name": "clips",
                "module_type": "interaction",
                "endpoint_url": module.url,
                "core": True,
                "commands": [{"command": "clip", "location_url": "/clip"}],
            },
        ):
            assert fleet.post("/api/modules/register", payload).status_code in (200, 201)
        for name in ("portal", "alias", "shoutout"):
            _wait(
                lambda name=name: fleet.get("/api/router/commands", params={"module": name}).json()[
                    "items"
                ],
                timeout=20,
                what=f"the {name} module's commands",
            )
        env = Env(fleet, collector, module)
        assert "created" in env.reply_to("!community portal login add owner@example.org")
        mail = email.message_from_bytes(next((fleet.data_dir / "mail").glob("*.eml")).read_bytes())
        body = mail.get_payload(decode=True).decode()
        temporary = re.search(r"Temporary password: (\S+)", body).group(1)
        answer = env.submit(
            "/portal_module/auth/login",
            "no_table",
            {"email": "owner@example.org", "password": temporary},
        )
        assert answer.status_code == 303
        answer = env.submit(
            "/portal_module/auth/change_password",
            "no_table",
            {"old_password": temporary, "new_password": PASSWORD, "new_password_again": PASSWORD},
        )
        assert answer.status_code == 303
        yield env
    finally:
        fleet.stop()
        collector.close()
        module.close()


# -- !community --------------------------------------------------------------------------------
def test_community_command_answers_every_input_in_chat(env):
    assert env.reply_to("!community").startswith("Usage: !community portal login add|remove")
    assert env.reply_to("!community portal").startswith(
        f"The community portal is at {env.fleet.url}/portal"
    )
    assert env.reply_to("!community portal login add").startswith("Which email address?")
    assert env.reply_to("!community portal login add bob").startswith(
        "'bob' is not a valid email address."
    )
    assert env.reply_to("!community nonsense").startswith("Unknown subcommand 'nonsense'.")
    assert env.reply_to("!community portal login remove ghost@example.org") == (
        "ghost@example.org has no portal access to WaddleBot Demo."
    )
    # the router keeps members out (min_role admin); an admin cannot act on owners
    assert "needs admin or higher" in env.reply_to(
        "!community portal login add x@example.org", user="pleb", roles=[]
    )
    assert (
        env.reply_to(
            "!community portal login remove owner@example.org", user="mia", roles=["admin"]
        )
        == "Only an owner can remove an owner's portal access."
    )
    assert (
        env.reply_to("!community portal login add y@example.org owner", user="mia", roles=["admin"])
        == "Only an owner can grant owner access to the portal."
    )


# -- modules and roles -------------------------------------------------------------------------
def test_switching_a_module_off_in_the_portal_reaches_the_router(env):
    assert env.chat("!clip", user="sam")["executions"][0]["status"] == "success"
    path = "/portal/communities/1/modules"
    answer = env.submit(
        path, "module_switch", {"entity_id": DEMO, "module_name": "clips", "state": "off"}
    )
    assert answer.status_code == 303
    # the command cache TTL is 30 s: only the shared version bump makes this immediate
    _wait(
        lambda: env.chat("!clip", user="sam")["executions"][0]["status"] == "disabled",
        timeout=5,
        what="the router to see the switch",
    )
    assert '<tr data-module="clips">' in env.page(path).text
    answer = env.submit(
        path, "module_switch", {"entity_id": DEMO, "module_name": "clips", "state": "on"}
    )
    assert answer.status_code == 303
    _wait(
        lambda: env.chat("!clip", user="sam")["executions"][0]["status"] == "success",
        timeout=5,
        what="the module back on",
    )


def test_an_owner_changes_a_members_role(env):
    env.chat("hello", user="nina", roles=[])
    env.fleet.post(
        "/api/reputation", {"entity_id": DEMO, "user_id": "nina", "activity_type": "follow"}
    )
    path = "/portal/communities/1/members"
    page = env.page(path).text
    nina = re.search(r'<option value="(\d+)">#\d+ nina</option>', page).group(1)
    answer = env.submit(path, "member_role", {"user_id": nina, "role": "vip"})
    assert answer.status_code == 303
    page = env.page(path).text
    assert re.search(r"nina</td>.*?role-vip", page, re.S)

    # the router has nina's community role map cached (vip: too low for this command);
    # the portal's change reaches it through the shared roles counter, not a 10-minute TTL
    admin_only = "!community portal login add nina@example.org"
    assert env.chat(admin_only, user="nina", roles=[])["executions"][0]["status"] == "denied"
    answer = env.submit(path, "member_role", {"user_id": nina, "role": "admin"})
    assert answer.status_code == 303
    _wait(
        lambda: env.chat(admin_only, user="nina", roles=[])["executions"][0]["status"] == "success",
        timeout=5,
        what="the router to see nina's new role",
    )
    answer = env.submit(path, "member_role", {"user_id": "1", "role": "member"})
    assert answer.status_code == 200  # the owner is not offered: a validation error


# -- overlay stream ------------------------------------------------------------------------------
def _events(response, until, timeout=8.0) -> list[str]:
    """Raw SSE blocks until ``until(blocks)`` holds or the stream ends."""
    blocks, buffer = [], ""
    deadline = time.monotonic() + timeout
    # the stream is close-delimited (no chunked encoding): read it as it comes
    for chunk in response.iter_content(chunk_size=1, decode_unicode=True):
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            blocks.append(block)
        if until(blocks) or time.monotonic() > deadline:
            break
    return blocks


def _data(blocks: list[str]) -> list[dict]:
    """The overlay events among SSE blocks (not the ``hello`` that opens a stream)."""
    return [
        json.loads(b.split("data: ", 1)[1])
        for b in blocks
        if "data: {" in b and "event: hello" not in b
    ]


def _hello(blocks: list[str]) -> bool:
    return any("event: hello" in b for b in blocks)


def test_the_overlay_stream_replays_after_last_event_id_and_ends_in_time(env):
    overlay = env.fleet.get("/api/portal/overlays", params={"entity_id": DEMO}).json()
    events_url = f"{overlay['url']}/events"
    with requests.get(events_url, stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"].startswith("no-cache")
        opened = _events(stream, _hello)
        assert opened[0].startswith("retry: ")
        sent = env.chat("!clip", user="tom")
        blocks = _events(stream, lambda b: _data(b))
    assert _data(blocks), (sent, opened, blocks)
    [event] = _data(blocks)
    assert event["response_action"] == "media" and event["entity_id"] == DEMO
    assert any(b.startswith(f"id: {event['id']}\ndata: ") for b in blocks)
    env.chat("!clip", user="uma")  # while nobody listens
    headers = {"Last-Event-ID": str(event["id"])}
    with requests.get(events_url, stream=True, timeout=10, headers=headers) as stream:
        blocks = _events(stream, lambda b: _data(b))
    assert [e["id"] for e in _data(blocks)] == [event["id"] + 1]
    started = time.monotonic()
    with requests.get(f"{events_url}?only=ticker", stream=True, timeout=10, headers=headers) as s:
        blocks = _events(s, lambda b: False, timeout=15)
    lasted = time.monotonic() - started
    assert not _data(blocks) and ": ping" in blocks  # the media is not a ticker
    assert 5.5 < lasted < 10, lasted  # PORTAL_OVERLAY_STREAM_SECONDS=6
    page = requests.get(overlay["url"], timeout=10)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert 'data-events="/overlay/' in page.text and "overlay.js" in page.text
    assert requests.get(f"{overlay['url']}?only=chat", timeout=10).status_code == 400


def test_send_test_alert_reaches_open_overlays(env):
    overlay = env.fleet.get("/api/portal/overlays", params={"entity_id": DEMO}).json()
    with requests.get(f"{overlay['url']}/events", stream=True, timeout=10) as stream:
        _events(stream, _hello)
        answer = env.submit(
            "/portal/communities/1/overlays", "overlay_test", {"entity_id": DEMO, "kind": "ticker"}
        )
        assert answer.status_code == 303
        blocks = _events(stream, lambda b: _data(b))
    [alert] = _data(blocks)
    assert alert["test"] is True and alert["response_action"] == "ticker"


# -- pages backed by other modules ---------------------------------------------------------------
def test_aliases_are_managed_through_the_alias_module(env):
    path = "/portal/communities/1/aliases"
    answer = env.submit(path, "alias_add", {"name": "hi", "command": "!clip"})
    assert answer.status_code == 303, answer.text[:2000]
    page = env.page(path).text
    assert "<td><code>!hi</code></td>" in page and "portal:owner@example.org" in page
    assert env.chat("!hi", user="vic")["executions"], "the alias runs in chat"
    answer = env.submit(path, "alias_add", {"name": "bad name!", "command": "!clip"})
    assert answer.status_code == 200 and "letters, digits" in answer.text
    answer = env.submit(path, "alias_add", {"name": "ghost", "command": "!nothing-here"})
    assert answer.status_code == 200 and "is not a command here" in answer.text
    answer = env.submit(path, "alias_remove", {"alias_id": "999999"})
    assert answer.status_code == 404
    answer = env.submit(path, "alias_remove", {})
    assert answer.status_code == 303
    assert "This community has no alias yet." in env.page(path).text


def test_automatic_shoutouts_are_switched_through_the_shoutout_module(env):
    path = "/portal/communities/1/shoutouts"
    page = env.page(path).text
    assert 'name="auto_shoutout"' in page and 'value="raid"' in page
    answer = env.submit(path, "shoutout_settings", {"auto_shoutout": "ON", "events": "raid"})
    assert answer.status_code == 303
    settings = env.fleet.get(f"/api/shoutout/settings/{DEMO}").json()
    assert settings["auto_shoutout"] is True and settings["events"] == ["raid"]
    assert settings["updated_by"] == "portal:owner@example.org"


def test_dashboard_and_activity_show_what_happened(env):
    page = env.page("/portal/communities/1").text
    assert "!clip" in page and 'id="stat-commands"' in page
    page = env.page("/portal/communities/1/activity").text
    assert "https://clips.twitch.tv/SomeClip" in page  # a media response
    assert "!community" in page and "success" in page  # an execution


def test_a_lost_password_is_reset_through_a_mailed_link_that_works_once(env):
    visitor = requests.Session()
    url = env.fleet.url
    page = visitor.get(f"{url}/portal_module/auth/request_reset_password", timeout=30)
    [form] = forms(page.text, "no_table")
    mails = set((env.fleet.data_dir / "mail").glob("*.eml"))
    answer = visitor.post(
        f"{url}/portal_module/auth/request_reset_password",
        data={**form, "email": "owner@example.org"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/portal_module/auth/login"
    [mail] = _wait(lambda: set((env.fleet.data_dir / "mail").glob("*.eml")) - mails)
    body = email.message_from_bytes(mail.read_bytes()).get_payload(decode=True).decode()
    link = re.search(r"(http://\S+reset_password\?token=\S+)", body).group(1)
    page = visitor.get(link, timeout=30)
    [form] = forms(page.text, "no_table")
    chosen = "Macaroni-Penguins-Dive-31"
    answer = visitor.post(
        link,
        data={**form, "new_password": chosen, "new_password_again": chosen},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303
    assert visitor.get(link, timeout=30).status_code == 404  # used once
    page = visitor.get(f"{url}/portal_module/auth/login", timeout=30)
    [form] = forms(page.text, "no_table")
    answer = visitor.post(
        f"{url}/portal_module/auth/login",
        data={**form, "email": "owner@example.org", "password": chosen},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/portal"
    assert (
        visitor.get(f"{url}/portal", allow_redirects=False, timeout=30).headers["Location"]
        == "/portal/communities/1"
    )
