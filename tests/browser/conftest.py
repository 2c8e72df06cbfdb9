"""Fixtures of the browser tests: Debian chromium through playwright, and a running fleet.

The fleet is ``waddlebot up`` with the router and the portal on the embedded default
(SQLite, in-process store). A :class:`StubServer` is the console collector (every chat
reply the router pushes lands there) and a stub interaction module answers ``!clip``
with a media response and ``!news`` with a ticker, standing in for the shoutout module.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import dataclasses
import email
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from waddlebot.testkit import FleetProcess, StubServer, chat_event

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclasses.dataclass
class Portal:
    """The running fleet, its stubs and helpers the browser tests share."""

    fleet: FleetProcess
    collector: StubServer
    module: StubServer

    @property
    def url(self) -> str:
        return self.fleet.url

    def chat(self, text: str, *, user: str = "alice", roles: list[str] | None = None) -> dict:
        """Send a chat line in the demo console channel; returns the router's answer."""
        answer = self.fleet.post("/api/router/events", chat_event(text, user=user, roles=roles))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def replies(self) -> list[str]:
        """Chat lines the router pushed to the console collector so far."""
        return [
            r.json.get("chat_message") or ""
            for r in self.collector.received("POST", r"/api/console/responses")
            if isinstance(r.json, dict)
        ]

    def wait_reply(self, predicate, timeout: float = 10.0) -> str:
        """The first pushed chat line matching ``predicate`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.replies():
                if predicate(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no matching reply; got {self.replies()}")

    def mails(self) -> list[email.message.Message]:
        """Every mail the portal wrote to ``<data-dir>/mail``, oldest first."""
        folder = self.fleet.data_dir / "mail"
        return [
            email.message_from_bytes(path.read_bytes()) for path in sorted(folder.glob("*.eml"))
        ]

    def temporary_password(self, address: str) -> str:
        """The temporary password of the latest mail to ``address``."""
        for message in reversed(self.mails()):
            if message["To"] == address:
                body = message.get_payload(decode=True).decode()
                return re.search(r"Temporary password: (\S+)", body).group(1)
        raise AssertionError(f"no mail to {address}")


def _wait_for_command(fleet: FleetProcess, module: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = fleet.get("/api/router/commands", params={"module": module})
        if answer.ok and answer.json()["items"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"module {module} never registered its commands:\n{fleet.logs()[-2000:]}")


def _stub_module(fleet_url: str) -> StubServer:
    stub = StubServer()
    image = f"{fleet_url}/portal_module/static/test-alert.svg"
    stub.route(
        "POST",
        r"/clip",
        {
            "response_action": "media",
            "media_type": "image",
            "media_url": image,
            "chat_message": "Check out the clip!",
            "response_data": {"duration": 2},
        },
    )
    stub.route(
        "POST",
        r"/news",
        {
            "response_action": "ticker",
            "ticker_text": "Breaking: penguins waddle faster on stream tonight",
            "ticker_duration": 2,
        },
    )
    options = ["red", "green", "blue"]
    stub.route(
        "POST",
        r"/poll",
        {
            "response_action": "form",
            "form_title": "Pick the next game",
            "form_description": "Every field type a module may ask for",
            "form_submit_url": f"{stub.url}/poll-answers",
            "form_fields": [
                {"name": "nick", "type": "text", "label": "Nick", "required": True},
                {"name": "story", "type": "textarea", "label": "Story"},
                {"name": "game", "type": "select", "label": "Game", "options": options},
                {"name": "extras", "type": "multiselect", "label": "Extras", "options": options},
                {"name": "team", "type": "radio", "label": "Team", "options": options},
                {"name": "agree", "type": "checkbox", "label": "I agree"},
                {"name": "hours", "type": "number", "label": "Hours"},
                {"name": "mail", "type": "email", "label": "Mail"},
                {"name": "site", "type": "url", "label": "Site"},
                {"name": "day", "type": "date", "label": "Day"},
                {"name": "at", "type": "time", "label": "At"},
            ],
            "response_data": {"duration": 30},
        },
    )
    return stub


def _missing(reason: str) -> None:
    """Skip on a developer machine without the browser; in CI a missing browser fails."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (make tools)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Headless Debian chromium (never a downloaded browser build)."""
    try:
        from playwright import sync_api
    except ImportError:
        _missing("the playwright package is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is not installed (make browser-deps)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory) -> Iterator[Portal]:
    """Router + portal with a console collector stub and a media/ticker module stub."""
    fleet = FleetProcess(
        ["router_module", "portal_module"],
        data_dir=tmp_path_factory.mktemp("portal-browser"),
        env={
            "ROUTER_COMMAND_CACHE_TTL": "0.5",
            "PORTAL_OVERLAY_RETRY_MS": "300",
            "PORTAL_OVERLAY_HEARTBEAT_SECONDS": "5",
        },
    )
    collector = StubServer()
    collector.route("POST", r"/api/console/responses", {"ok": True})
    fleet.start()
    module = _stub_module(fleet.url)
    try:
        fleet.register("console-browser", collector.url, collector_for="console")
        answer = fleet.post(
            "/api/modules/register",
            {
                "module_name": "clips-stub",
                "module_type": "interaction",
                "endpoint_url": module.url,
                "core": True,
                "commands": [
                    {"command": "clip", "location_url": "/clip"},
                    {"command": "news", "location_url": "/news"},
                    {"command": "poll", "location_url": "/poll"},
                ],
            },
        )
        assert answer.status_code in (200, 201), answer.text
        _wait_for_command(fleet, "portal")
        yield Portal(fleet, collector, module)
    finally:
        fleet.stop()
        collector.close()
        module.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """The folder screenshots are saved in."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
