"""Portal services without HTTP: the !community command, logins, overlays, mail, settings.

The services are imported from ``portal_module`` without running the app's
``__init__`` (which would build its fixtures from the environment), against a SQLite
database in a temporary folder (router tables included, from the router's models file)
and the in-process store.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import os
import socketserver
import stat
import sys
import threading
import time
import types
from pathlib import Path
from unittest import mock

import pytest

from waddlebot.db import Database
from waddlebot.modules import CommandCall
from waddlebot.settings import Secret, SettingsError
from waddlebot.store import MemoryStore
from waddlebot.testkit import StubServer

ROOT = Path(__file__).resolve().parents[2]


def _app(module: str):
    """Import ``portal_module.<module>`` without executing the app package's __init__."""
    if "portal_module" not in sys.modules:
        package = types.ModuleType("portal_module")
        package.__path__ = [str(ROOT / "portal_module")]
        sys.modules["portal_module"] = package
    return importlib.import_module(f"portal_module.{module}")


def _router_models():
    spec = importlib.util.spec_from_file_location(
        "router_models_for_portal_tests", ROOT / "router_module" / "models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


models = _app("models")
access = _app("services.access")
command = _app("services.community_command")
community = _app("services.community")
overlays = _app("services.overlays")
mail = _app("services.mail")
remote = _app("services.remote")
with mock.patch.dict(os.environ, {"WADDLEBOT_API_KEYS": "unit-test-key"}):
    # the module builds its own settings object at import; the tests call load(env)
    portal_settings = _app("settings")


@pytest.fixture
def database(tmp_path):
    database = Database(
        f"sqlite://{tmp_path / 'portal.sqlite'}",
        definers=[_router_models().define_tables, models.define_tables],
        migrate=True,
        folder=str(tmp_path),
        pool_size=0,
    )
    yield database
    database.close()


@pytest.fixture
def db(database):
    with database.connection() as db:
        yield db


@pytest.fixture
def demo(db):
    """A community with two channels, its owner alice and a member bob."""
    alice = db.users.insert(display_name="alice")
    bob = db.users.insert(display_name="bob")
    db.user_identities.insert(user_id=alice, platform="console", platform_user_id="alice")
    db.user_identities.insert(
        user_id=alice, platform="twitch", platform_user_id="111", platform_username="alice"
    )
    db.user_identities.insert(user_id=bob, platform="console", platform_user_id="bob")
    community_id = db.communities.insert(name="Demo", platform="console", owner_user_id=alice)
    for platform in ("console", "twitch"):
        db.entities.insert(
            entity_id=f"{platform}:demo:demo",
            platform=platform,
            server_id="demo",
            channel_id="demo",
            community_id=community_id,
        )
    db.community_memberships.insert(community_id=community_id, user_id=alice, reputation=5)
    db.community_memberships.insert(community_id=community_id, user_id=bob, reputation=40)
    db.community_rbac.insert(community_id=community_id, user_id=alice, role="owner")
    return {"community_id": community_id, "alice": alice, "bob": bob}


class FakeMailer:
    """Records messages; fails when told to."""

    def __init__(self, fail: bool = False):
        self.sent: list[dict] = []
        self.fail = fail

    def send(self, to, subject="", body="", **kwargs):
        if self.fail:
            raise mail.MailError("no mail server")
        self.sent.append({"to": to, "subject": subject, "body": body})
        return True


def call(text: str, *, community_id: int, role: str = "owner", user_id: int = 1) -> CommandCall:
    """The router's call for ``!community <text>`` (DESIGN §8)."""
    args = text.split()
    return CommandCall.parse(
        {
            "session_id": "s1",
            "execution_id": "e1",
            "entity_id": "console:demo:demo",
            "community_id": community_id,
            "platform": "console",
            "server_id": "demo",
            "channel_id": "demo",
            "user": {"id": user_id, "platform_user_id": "alice", "name": "alice", "role": role},
            "command": "community",
            "prefix": "!",
            "args": args,
            "args_text": text,
            "message_content": f"!community {text}",
            "message_type": "chatMessage",
            "metadata": {},
        }
    )


# -- !community: parsing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "Usage: !community portal login add|remove <email>"),
        (["portal", "login"], "Usage: !community portal login add|remove <email>"),
        (["shop"], "Unknown subcommand 'shop'"),
        (["portal", "logout"], "Unknown subcommand 'portal logout'"),
        (["portal", "login", "kick"], "Unknown subcommand 'portal login kick'"),
        (["portal", "login", "add"], "Which email address?"),
        (["portal", "login", "add", "not-an-email"], "'not-an-email' is not a valid email"),
        (["portal", "login", "add", "a@example.org", "king"], "must be owner or admin"),
        (["portal", "login", "remove", "a@example.org", "owner"], "Too many arguments"),
        (["portal", "login", "add", "a@example.org", "admin", "x"], "Too many arguments"),
    ],
)
def test_bad_community_commands_explain_themselves(args, expected):
    with pytest.raises(command.CommandProblem) as problem:
        command.parse(args)
    assert expected in str(problem.value)


def test_community_command_parses_logins():
    assert command.parse(["portal", "login", "add", "Someone@Example.ORG"]) == (
        command.LoginRequest("add", "someone@example.org", None)
    )
    assert command.parse(["PORTAL", "Login", "ADD", "a@example.org", "Owner"]).role == "owner"
    assert command.parse(["portal", "login", "remove", "a@example.org"]).action == "remove"
    assert isinstance(command.parse(["portal"]), command.PortalInfo)


# -- !community: effects -----------------------------------------------------------------------
def test_add_creates_a_login_with_a_mailed_temporary_password(db, demo):
    mailer = FakeMailer()
    reply = command.run(
        db,
        call=call("portal login add new@example.org", community_id=demo["community_id"]),
        mailer=mailer,
        portal_url="https://bot.example/portal",
    )
    assert reply == "Portal login for new@example.org created; the temporary password was mailed."
    [message] = mailer.sent
    assert message["to"] == "new@example.org"
    assert message["subject"] == "Your WaddleBot portal login for Demo"
    assert "https://bot.example/portal" in message["body"]
    password = message["body"].split("Temporary password: ")[1].split()[0]
    user = db(db.auth_user.email == "new@example.org").select().first()
    assert user.must_change_password and user.waddlebot_user_id == 1
    assert password not in user.password and str(user.password).startswith("pbkdf2")
    assert (
        access.access_role(db, auth_user_id=user.id, community_id=demo["community_id"]) == "owner"
    )


def test_add_again_reissues_until_the_first_login_then_links(db, demo):
    mailer = FakeMailer()
    run = lambda text, **kw: command.run(  # noqa: E731
        db, call=call(text, community_id=demo["community_id"], **kw), mailer=mailer, portal_url="u"
    )
    run("portal login add x@example.org admin")
    first = db(db.auth_user.email == "x@example.org").select().first().password
    assert "re-issued" in run("portal login add x@example.org")
    assert db(db.auth_user.email == "x@example.org").select().first().password != first
    db(db.auth_user.email == "x@example.org").update(must_change_password=False)
    assert run("portal login add x@example.org admin") == (
        "x@example.org already has portal access to Demo."
    )
    other = db.communities.insert(name="Other", platform="console")
    reply = command.run(
        db,
        call=call("portal login add x@example.org", community_id=other),
        mailer=mailer,
        portal_url="u",
    )
    assert reply == "x@example.org can now manage Other in the portal; a notice was mailed."
    assert "Temporary password" not in mailer.sent[-1]["body"]
    user = db(db.auth_user.email == "x@example.org").select().first()
    assert [c["name"] for c in access.communities_of(db, auth_user_id=user.id)] == ["Demo", "Other"]


def test_admins_cannot_grant_or_remove_owner_access(db, demo):
    mailer = FakeMailer()
    cid = demo["community_id"]
    command.run(
        db,
        call=call("portal login add o@example.org", community_id=cid),
        mailer=mailer,
        portal_url="u",
    )
    as_admin = dict(community_id=cid, role="admin", user_id=2)
    assert (
        command.run(
            db,
            call=call("portal login add p@example.org owner", **as_admin),
            mailer=mailer,
            portal_url="u",
        )
        == "Only an owner can grant owner access to the portal."
    )
    assert (
        command.run(
            db,
            call=call("portal login remove o@example.org", **as_admin),
            mailer=mailer,
            portal_url="u",
        )
        == "Only an owner can remove an owner's portal access."
    )
    as_moderator = dict(community_id=cid, role="moderator")
    assert "Only the community's owner or an admin" in command.run(
        db,
        call=call("portal login add q@example.org", **as_moderator),
        mailer=mailer,
        portal_url="u",
    )


def test_remove_revokes_one_community(db, demo):
    mailer = FakeMailer()
    cid = demo["community_id"]
    command.run(
        db,
        call=call("portal login add r@example.org", community_id=cid),
        mailer=mailer,
        portal_url="u",
    )
    user_id = db(db.auth_user.email == "r@example.org").select().first().id
    reply = command.run(
        db,
        call=call("portal login remove r@example.org", community_id=cid),
        mailer=mailer,
        portal_url="u",
    )
    assert reply == "Portal access of r@example.org to Demo removed."
    assert access.access_role(db, auth_user_id=user_id, community_id=cid) is None
    assert db.auth_user(user_id) is not None
    assert (
        command.run(
            db,
            call=call("portal login remove r@example.org", community_id=cid),
            mailer=mailer,
            portal_url="u",
        )
        == "r@example.org has no portal access to Demo."
    )


def test_a_mail_failure_changes_nothing(db, demo):
    db.commit()
    reply = command.run(
        db,
        call=call("portal login add m@example.org", community_id=demo["community_id"]),
        mailer=FakeMailer(fail=True),
        portal_url="u",
    )
    assert "Could not send the mail to m@example.org, so nothing was changed" in reply
    assert db(db.auth_user.email == "m@example.org").isempty()


def test_temporary_passwords_are_random_and_long():
    passwords = {access.temporary_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(len(p) >= 22 for p in passwords)
    assert access.normalize_email(" A@Example.org ") == "a@example.org"
    assert access.normalize_email("a@") is None


# -- community data ----------------------------------------------------------------------------
def test_dashboard_counts_members_activity_and_leaders(db, demo):
    now = datetime.datetime(2026, 1, 10, 12, 0)
    for age_hours, name in ((1, "!so"), (2, "!so"), (30, "!help"), (24 * 10, "!old")):
        db.command_executions.insert(
            execution_id=f"x{age_hours}",
            command=name,
            entity_id="console:demo:demo",
            user_id="bob",
            status="success",
            created_at=now - datetime.timedelta(hours=age_hours),
        )
    db.command_executions.insert(
        execution_id="elsewhere",
        command="!so",
        entity_id="console:else:else",
        created_at=now - datetime.timedelta(hours=1),
    )
    stats = community.dashboard(db, demo["community_id"], now=now)
    assert stats["members"] == 2
    assert stats["commands"] == {"day": 2, "week": 3}
    assert stats["top_commands"] == [{"command": "!so", "uses": 2}, {"command": "!help", "uses": 1}]
    assert [leader["display_name"] for leader in stats["leaders"]] == ["bob", "alice"]
    assert stats["entities"] == ["console:demo:demo", "twitch:demo:demo"]


def test_members_identities_and_roles(db, demo):
    ids = [demo["alice"], demo["bob"]]
    identities = community.identities_of(db, ids)
    assert identities[demo["alice"]] == ["console:alice", "twitch:alice"]
    assert community.roles_of(db, demo["community_id"], ids) == {
        demo["alice"]: "owner",
        demo["bob"]: "member",
    }
    assert [c[0] for c in community.member_choices(db, demo["community_id"])] == [demo["bob"]]
    community.set_role(
        db,
        community_id=demo["community_id"],
        user_id=demo["bob"],
        role="moderator",
        assigned_by="portal:t",
    )
    assert community.roles_of(db, demo["community_id"], [demo["bob"]])[demo["bob"]] == "moderator"
    with pytest.raises(ValueError):
        community.set_role(
            db,
            community_id=demo["community_id"],
            user_id=demo["alice"],
            role="member",
            assigned_by="portal:t",
        )
    with pytest.raises(ValueError):
        community.set_role(
            db,
            community_id=demo["community_id"],
            user_id=demo["bob"],
            role="owner",
            assigned_by="portal:t",
        )


def test_modules_are_core_or_marketplace_and_switch_per_entity(db, demo):
    core = db.collector_modules.insert(module_name="shout", core=True, module_type="interaction")
    market = db.collector_modules.insert(module_name="dice", core=False, module_type="interaction")
    db.collector_modules.insert(module_name="tw", module_type="collector", platform="twitch")
    for module_id, name, cmd in ((core, "shout", "so"), (market, "dice", "roll")):
        db.commands.insert(
            command=cmd, prefix="!", type="container", module_id=module_id, module_name=name
        )
    entities = ["console:demo:demo", "twitch:demo:demo"]
    listed = {m["module_name"]: m for m in community.modules_overview(db, entities)}
    assert set(listed) == {"shout", "dice"}
    assert listed["shout"]["kind"] == "core" and listed["dice"]["kind"] == "marketplace"
    assert listed["shout"]["enabled"] == {e: True for e in entities}
    assert listed["dice"]["enabled"] == {e: False for e in entities}
    assert (
        community.set_module_enabled(db, entity_id=entities[0], module_name="dice", enabled=True)
        == 1
    )
    community.set_module_enabled(db, entity_id=entities[1], module_name="shout", enabled=False)
    community.set_module_enabled(db, entity_id=entities[1], module_name="shout", enabled=False)
    listed = {m["module_name"]: m for m in community.modules_overview(db, entities)}
    assert listed["dice"]["enabled"] == {entities[0]: True, entities[1]: False}
    assert listed["shout"]["enabled"] == {entities[0]: True, entities[1]: False}
    assert db(db.command_permissions.entity_id == entities[1]).count() == 1


# -- overlays ----------------------------------------------------------------------------------
def test_overlay_keys_are_per_entity_rotatable_and_strict(db, demo):
    key = overlays.key_for_entity(db, "console:demo:demo")
    assert overlays.key_for_entity(db, "console:demo:demo") == key
    assert overlays.key_for_entity(db, "twitch:demo:demo") != key
    assert len(key) == 32 and overlays.entity_for_key(db, key) == "console:demo:demo"
    for wrong in ("", "short", key[:-1], key + "'; --", key.swapcase(), "../" + key):
        assert overlays.entity_for_key(db, wrong) is None
    old, new = overlays.rotate_key(db, "console:demo:demo")
    assert old == key and new != key
    assert overlays.entity_for_key(db, key) is None
    assert overlays.entity_for_key(db, new) == "console:demo:demo"
    assert len({overlays.new_key() for _ in range(1000)}) == 1000


def _event(event_id, action="media", **extra):
    body = {"id": event_id, "entity_id": "console:demo:demo", "response_action": action}
    if action == "media":
        body.update(media_type="image", media_url="https://example.org/x.png")
    if action == "ticker":
        body.update(ticker_text="hello", ticker_duration=2)
    body.update(extra)
    return body


def _collect(stream, *, until=None, limit=50, timeout=5.0) -> list[str]:
    """Chunks of an event stream until ``until(chunk)``, the stream ends, or the limit."""
    chunks = []
    deadline = time.monotonic() + timeout
    for chunk in stream:
        chunks.append(chunk)
        if (until and until(chunk)) or len(chunks) >= limit or time.monotonic() > deadline:
            break
    return chunks


def _stream(store, **kwargs):
    options = dict(
        entity_id="console:demo:demo",
        key="k" * 32,
        last_event_id=None,
        only=None,
        retry_ms=1500,
        heartbeat=5.0,
        max_seconds=5.0,
    )
    options.update(kwargs)
    return overlays.event_stream(store, **options)


def test_a_stream_starts_with_retry_and_remembers_where_it_began():
    store = MemoryStore()
    for event_id in (3, 4):
        store.push_recent("overlay:recent:console:demo:demo", json.dumps(_event(event_id)), 50)
    stream = _stream(store)
    assert next(stream) == "retry: 1500\n: connected\n\n"
    assert next(stream) == "id: 4\nevent: hello\ndata: {}\n\n"
    threading.Timer(
        0.05, lambda: store.publish("overlay:console:demo:demo", json.dumps(_event(5, "ticker")))
    ).start()
    live = next(stream)
    assert live.startswith("id: 5\ndata: ") and json.loads(live.split("data: ")[1])["id"] == 5
    stream.close()


def test_a_reconnect_replays_what_it_missed_then_goes_live():
    store = MemoryStore()
    for event_id in (7, 8, 9):
        store.push_recent("overlay:recent:console:demo:demo", json.dumps(_event(event_id)), 50)
    stream = _stream(store, last_event_id=7)
    chunks = [next(stream) for _ in range(4)]
    assert chunks[1] == "id: 7\nevent: hello\ndata: {}\n\n"
    assert [json.loads(c.split("data: ")[1])["id"] for c in chunks[2:]] == [8, 9]
    for payload in (
        _event(9),
        _event(6),
        {"entity_id": "x", "response_action": "chat"},
        _event(None, "media", test=True),
        "not json",
        _event(10),
    ):
        store.publish(
            "overlay:console:demo:demo",
            payload if isinstance(payload, str) else json.dumps(payload),
        )
    rest = _collect(stream, until=lambda c: '"id":10' in c)
    sent = [json.loads(c.split("data: ")[1]) for c in rest if "data: " in c]
    assert [e.get("id") for e in sent] == [6, None, 10]  # 9 was replayed already; chat is not
    assert rest[1].startswith("data: ")  # the test alert has no id
    stream.close()


def test_only_filters_and_rotation_ends_the_stream():
    store = MemoryStore()
    stream = _stream(store, only="ticker")
    next(stream), next(stream)
    store.publish("overlay:console:demo:demo", json.dumps(_event(1, "media")))
    store.publish("overlay:console:demo:demo", json.dumps(_event(2, "ticker")))
    store.publish(
        "overlay:console:demo:demo",
        json.dumps({"control": "key_rotated", "revoked": overlays.key_digest("other")}),
    )
    store.publish(
        "overlay:console:demo:demo",
        json.dumps({"control": "key_rotated", "revoked": overlays.key_digest("k" * 32)}),
    )
    rest = _collect(stream)
    assert len(rest) == 1 and '"response_action":"ticker"' in rest[0]


def test_a_stream_pings_and_ends_after_its_lifetime():
    store = MemoryStore()
    started = time.monotonic()
    chunks = _collect(_stream(store, heartbeat=0.1, max_seconds=0.45))
    assert chunks.count(": ping\n\n") >= 3
    assert 0.4 < time.monotonic() - started < 2.0


def test_event_ids_parse_strictly():
    assert overlays.parse_event_id("12") == 12
    for bad in (None, "", "abc", "-1", "1.5"):
        assert overlays.parse_event_id(bad) is None


# -- mail --------------------------------------------------------------------------------------
def test_the_files_transport_writes_private_eml_files(tmp_path, caplog):
    mailer = mail.PortalMailer(
        transport="files", sender="bot@example.org", mail_dir=tmp_path / "mail"
    )
    caplog.set_level("INFO", logger="waddlebot.portal.mail")
    assert mailer.send("a@example.org", subject="Hello there", body="secret: 123")
    [path] = list((tmp_path / "mail").glob("*.eml"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "To: a@example.org" in text and "From: bot@example.org" in text
    assert "Subject: Hello there" in text and "secret: 123" in text
    assert "Hello there" in caplog.text and "secret: 123" not in caplog.text


def test_the_sendmail_transport_pipes_the_message(tmp_path):
    out = tmp_path / "piped.txt"
    script = tmp_path / "sendmail"
    script.write_text(f'#!/bin/sh\necho "$@" > {out}.args\ncat > {out}\n')
    script.chmod(0o755)
    mailer = mail.PortalMailer(
        transport="sendmail", sender="bot@example.org", sendmail_path=str(script)
    )
    mailer.send("a@example.org", subject="Piped", body="body text")
    assert "Subject: Piped" in out.read_text() and "body text" in out.read_text()
    assert Path(f"{out}.args").read_text().split() == ["-t", "-i"]
    broken = mail.PortalMailer(
        transport="sendmail", sender="b@example.org", sendmail_path=str(tmp_path / "missing")
    )
    with pytest.raises(mail.MailError):
        broken.send("a@example.org", subject="x", body="y")


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for one message (no TLS)."""

    def handle(self):
        def say(line):
            self.wfile.write((line + "\r\n").encode())

        say("220 stub ESMTP")
        data = []
        while True:
            line = self.rfile.readline().decode().rstrip("\r\n")
            if not line:
                return
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-stub\r\n250 AUTH PLAIN LOGIN")
            elif verb == "AUTH":
                self.server.auth.append(line)
                say("235 ok")
            elif verb == "DATA":
                say("354 go on")
                while True:
                    chunk = self.rfile.readline().decode()
                    if chunk in (".\r\n", ".\n"):
                        break
                    data.append(chunk)
                self.server.messages.append("".join(data))
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("250 ok")


def test_the_smtp_transport_uses_py4webs_mailer():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.messages, server.auth = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mailer = mail.PortalMailer(
            transport="smtp",
            sender="bot@example.org",
            smtp_host="127.0.0.1",
            smtp_port=server.server_address[1],
            smtp_username="u",
            smtp_password="p",
            smtp_tls=False,
        )
        assert mailer.send("a@example.org", subject="Over SMTP", body="hello")
        assert "Subject: Over SMTP" in server.messages[0] and server.auth
    finally:
        server.shutdown()
        server.server_close()
    down = mail.PortalMailer(
        transport="smtp",
        sender="b@example.org",
        smtp_host="127.0.0.1",
        smtp_port=server.server_address[1],
        smtp_tls=False,
        timeout=1,
    )
    with pytest.raises(mail.MailError):
        down.send("a@example.org", subject="x", body="y")
    assert (
        mail.AuthMailer(
            transport="smtp",
            sender="b@example.org",
            smtp_host="127.0.0.1",
            smtp_port=server.server_address[1],
            smtp_tls=False,
            timeout=1,
        ).send("a@example.org", subject="x", body="y")
        is False
    )


# -- settings ----------------------------------------------------------------------------------
BASE = {"WADDLEBOT_API_KEYS": "k1,k2"}


@pytest.mark.parametrize(
    ("extra", "transport"),
    [
        ({}, "files"),
        ({"SMTP_HOST": "smtp.example.org"}, "smtp"),
        ({"DATABASE_URL": "postgresql://db/x"}, "sendmail"),
        ({"DATABASE_URL": "postgresql://db/x", "PORTAL_MAIL_DIR": "/tmp/m"}, "files"),
        ({"SMTP_HOST": "smtp.example.org", "PORTAL_MAIL_TRANSPORT": "files"}, "files"),
    ],
)
def test_the_mail_transport_follows_the_environment(tmp_path, extra, transport):
    env = {**BASE, "WADDLEBOT_DATA_DIR": str(tmp_path), **extra}
    settings = portal_settings.load(env)
    assert settings.mail_transport == transport
    if "PORTAL_MAIL_DIR" not in extra:
        assert settings.mail_dir == tmp_path.resolve() / "mail"


def test_settings_refuse_smtp_without_a_host_and_derive_a_session_secret():
    with pytest.raises(SettingsError) as error:
        portal_settings.load({**BASE, "PORTAL_MAIL_TRANSPORT": "smtp"})
    assert error.value.variable == "SMTP_HOST"
    first = portal_settings.load(BASE).session_secret
    assert first == portal_settings.load(BASE).session_secret
    assert first.reveal() not in ("k1", "k2") and "k1" not in repr(first)
    assert portal_settings.load({**BASE, "PORTAL_SESSION_SECRET": "s" * 40}).session_secret == (
        Secret("s" * 40)
    )
    settings = portal_settings.load({**BASE, "WADDLEBOT_PUBLIC_URL": "https://bot.example/"})
    assert settings.portal_url == "https://bot.example/portal"
    assert settings.endpoint_url == "https://bot.example"


# -- neighbouring APIs -------------------------------------------------------------------------
def test_remote_api_reports_missing_modules_and_refusals():
    stub = StubServer()
    stub.route(
        "GET",
        r"/api/router/string-rules",
        lambda r: {
            "items": [
                {"id": 1, "string": "a", "enabled_entity_ids": ["console:demo:demo"]},
                {"id": 2, "string": "b", "enabled_entity_ids": ["*"]},
                {"id": 3, "string": "c", "enabled_entity_ids": ["console:demo:demo", "x:y:z"]},
                {"id": 4, "string": "d", "enabled_entity_ids": []},
            ],
            "total": 4,
        },
    )
    stub.route(
        "POST",
        r"/api/router/string-rules",
        (400, {"error": {"code": "validation_error", "message": "bad regex", "field": "string"}}),
    )
    stub.route("GET", r"/api/shoutout/settings/.*", (500, {"error": "boom"}))
    api = remote.RemoteApi(
        router_url=stub.url, alias_url=stub.url, shoutout_url=stub.url, api_key="k", timeout=2
    )
    try:
        rules = api.string_rules({"console:demo:demo", "twitch:demo:demo"})
        assert [r["id"] for r in rules] == [1]
        assert stub.received("GET")[0].headers["X-API-Key"] == "k"
        with pytest.raises(remote.RemoteRejected) as refused:
            api.create_string_rule({"string": "("})
        assert refused.value.field == "string" and refused.value.message == "bad regex"
        with pytest.raises(remote.ModuleUnavailable):
            api.aliases(1)  # no route: a plain 404
        with pytest.raises(remote.ModuleUnavailable):
            api.shoutout_settings("console:demo:demo")
    finally:
        stub.close()
    nobody = remote.RemoteApi(
        router_url=stub.url, alias_url=stub.url, shoutout_url=stub.url, api_key="k", timeout=1
    )
    with pytest.raises(remote.ModuleUnavailable):
        nobody.recent_responses("console:demo:demo")


def test_aliases_are_read_per_community_and_shoutout_settings_per_channel():
    stub = StubServer()
    stub.route(
        "GET",
        r"/api/alias/aliases",
        lambda r: {"items": [{"id": 1, "name": "hi", "command": "!so x"}], "total": 1},
    )
    stub.route(
        "GET",
        r"/api/shoutout/settings/(?P<entity>.+)",
        lambda r: {"entity_id": r.match["entity"], "auto_shoutout": True, "events": ["raid"]},
    )
    try:
        api = remote.RemoteApi(
            router_url=stub.url, alias_url=stub.url, shoutout_url=stub.url, api_key="k", timeout=2
        )
        assert api.aliases(4) == [{"id": 1, "name": "hi", "command": "!so x"}]
        assert "community_id=4" in stub.received("GET")[0].query
        settings = api.shoutout_settings("console:demo:demo")
        assert settings["auto_shoutout"] is True and settings["events"] == ["raid"]
        assert stub.received("GET")[1].path == "/api/shoutout/settings/console%3Ademo%3Ademo"
    finally:
        stub.close()


def test_the_portal_uses_the_one_router_schema(tmp_path):
    """The portal defines the router's tables from the shared definition, not a copy."""
    from waddlebot.router_tables import define_router_tables

    database = Database(
        f"sqlite://{tmp_path / 'alone.sqlite'}",
        definers=[models.define_tables],
        migrate=True,
        folder=str(tmp_path),
        pool_size=0,
    )
    try:
        tables = {
            row[0]
            for row in database.primary.executesql(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
        assert {"auth_user", "portal_access", "portal_overlay_keys"} <= tables
        assert {"commands", "command_permissions", "command_executions"} <= tables
        fields = set(database.primary.commands.fields)
        assert {"min_role", "execution_mode", "usage_count"} <= fields
        define_router_tables(database.primary)  # idempotent: already defined
    finally:
        database.close()
    assert os.path.exists(tmp_path / "alone.sqlite")
