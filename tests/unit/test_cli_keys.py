"""``waddlebot`` CLI helpers: key resolution order, environment defaults, reply lines."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

from waddlebot import cli


def test_chat_key_prefers_the_command_line(tmp_path):
    (tmp_path / "api_key").write_text("from-file\n")
    environ = {"WADDLEBOT_API_KEY": "single", "WADDLEBOT_API_KEYS": "first,second"}
    assert cli.resolve_chat_key("from-cli", environ, tmp_path) == "from-cli"


def test_chat_key_then_single_env_key(tmp_path):
    (tmp_path / "api_key").write_text("from-file\n")
    environ = {"WADDLEBOT_API_KEY": "single", "WADDLEBOT_API_KEYS": "first,second"}
    assert cli.resolve_chat_key(None, environ, tmp_path) == "single"


def test_chat_key_then_first_of_the_service_keys(tmp_path):
    (tmp_path / "api_key").write_text("from-file\n")
    environ = {"WADDLEBOT_API_KEY": "", "WADDLEBOT_API_KEYS": " , first ,second"}
    assert cli.resolve_chat_key("", environ, tmp_path) == "first"


def test_chat_key_then_the_data_dir(tmp_path):
    (tmp_path / "api_key").write_text("  from-file \n")
    assert cli.resolve_chat_key(None, {}, tmp_path) == "from-file"


def test_chat_key_none_without_any_source(tmp_path):
    assert cli.resolve_chat_key(None, {}, tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()


def test_dev_key_is_generated_once_with_private_mode(tmp_path):
    data_dir = tmp_path / "data"
    key, created = cli.read_or_create_api_key(data_dir)
    assert created and len(key) >= 32
    mode = stat.S_IMODE((data_dir / "api_key").stat().st_mode)
    assert mode == 0o600
    again, created_again = cli.read_or_create_api_key(data_dir)
    assert (again, created_again) == (key, False)


def test_service_key_comes_from_env_before_the_data_dir(tmp_path):
    assert cli.service_key_for({"WADDLEBOT_API_KEYS": "a,b"}, tmp_path) == ("a", "env")
    assert not (tmp_path / "api_key").exists()
    key, source = cli.service_key_for({}, tmp_path)
    assert source == "generated"
    assert cli.service_key_for({}, tmp_path) == (key, "data_dir")


def test_env_defaults_fill_only_what_is_unset(tmp_path):
    updates = cli.env_defaults(
        {}, data_dir=tmp_path, local_url="http://127.0.0.1:8123", api_key="dev-key"
    )
    assert updates == {
        "WADDLEBOT_DATA_DIR": str(tmp_path),
        "WADDLEBOT_PUBLIC_URL": "http://127.0.0.1:8123",
        "ROUTER_API_URL": "http://127.0.0.1:8123",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "WADDLEBOT_API_KEYS": "dev-key",
    }


def test_env_defaults_keep_what_the_operator_set(tmp_path):
    environ = {
        "WADDLEBOT_DATA_DIR": "/elsewhere",
        "WADDLEBOT_PUBLIC_URL": "https://bot.example.org",
        "ROUTER_API_URL": "http://router:8000",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false",
        "WADDLEBOT_API_KEYS": "operator-key",
    }
    updates = cli.env_defaults(
        environ, data_dir=tmp_path, local_url="http://127.0.0.1:8000", api_key="dev-key"
    )
    # the data folder of the command always wins: it is where the command works
    assert updates == {"WADDLEBOT_DATA_DIR": str(tmp_path)}


def test_migrate_env_defaults_set_no_urls(tmp_path):
    updates = cli.env_defaults({}, data_dir=tmp_path, api_key="k")
    assert updates == {"WADDLEBOT_DATA_DIR": str(tmp_path), "WADDLEBOT_API_KEYS": "k"}


def test_data_dir_flag_then_env_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.data_dir_path("x", {"WADDLEBOT_DATA_DIR": "y"}) == tmp_path / "x"
    assert cli.data_dir_path(None, {"WADDLEBOT_DATA_DIR": "y"}) == tmp_path / "y"
    assert cli.data_dir_path(None, {}) == tmp_path / ".data"


def test_base_url_never_advertises_a_wildcard_address():
    assert cli.base_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert cli.base_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert cli.base_url("::", 8000) == "http://[::1]:8000"
    assert cli.base_url("::1", 8000) == "http://[::1]:8000"


def test_event_payload_marks_the_broadcaster_as_owner():
    body = cli.event_payload("!so bob", channel="demo", user="alice", roles=["broadcaster"])
    assert body["platform"] == "console"
    assert body["server_id"] == body["channel_id"] == "demo"
    assert body["user_id"] == body["user_name"] == "alice"
    assert body["message_type"] == "chatMessage"
    assert body["message_content"] == "!so bob"
    assert body["user_roles"] == ["broadcaster"]
    assert body["owner_user_id"] == "alice"
    assert len(body["event_id"]) == 32
    viewer = cli.event_payload("hi", channel="demo", user="bob", roles=["vip"])
    assert "owner_user_id" not in viewer
    assert viewer["event_id"] != body["event_id"]


def test_registration_points_the_router_at_the_local_listener():
    body = cli.registration_payload(43210)
    assert body["module_type"] == "collector" and body["platform"] == "console"
    assert body["endpoint_url"] == "http://127.0.0.1:43210"
    assert body["health_check_url"] == "http://127.0.0.1:43210/api/console/health"
    assert body["core"] is False and body["commands"] == []


def test_reply_lines_for_every_response_action():
    assert cli.format_reply({"response_action": "chat", "chat_message": "hi"}) == ["bot> hi"]
    assert cli.format_reply(
        {"response_action": "media", "media_type": "clip", "media_url": "https://c/1"}
    ) == ["[media clip] https://c/1"]
    assert cli.format_reply(
        {"response_action": "ticker", "ticker_text": "raid!", "ticker_duration": 10}
    ) == ["[ticker 10s] raid!"]
    assert cli.format_reply({"response_action": "form", "form_title": "Poll"}) == ["[form] Poll"]
    moderated = cli.format_reply(
        {
            "response_action": "chat",
            "chat_message": "no links",
            "moderation": {"action": "delete", "message_id": "m1"},
        }
    )
    assert moderated == ["bot> no links", "[moderation] delete message m1"]


def test_error_message_reads_the_design_error_body():
    body = {"error": {"code": "validation_error", "message": "bad type", "field": "message_type"}}
    assert cli.error_message(body, "HTTP 400") == "bad type (message_type)"
    assert cli.error_message("oops", "HTTP 500") == "HTTP 500"


def _post(url, body, key=None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_console_listener_checks_the_key_and_prints_replies(tmp_path):
    out_path = tmp_path / "out.txt"
    with out_path.open("w") as out:
        listener = cli.ConsoleListener("secret-key", out=out)
        listener.start()
        try:
            base = f"http://127.0.0.1:{listener.port}"
            with urllib.request.urlopen(f"{base}/api/console/health", timeout=5) as answer:
                assert json.load(answer) == {"status": "ok"}
            reply = {"response_action": "chat", "chat_message": "hello alice"}
            assert _post(f"{base}/api/console/responses", reply) == 401
            assert _post(f"{base}/api/console/responses", reply, key="wrong") == 403
            assert listener.replies == 0
            assert _post(f"{base}/api/console/responses", reply, key="secret-key") == 200
            assert listener.replies == 1 and listener.last_reply_at is not None
        finally:
            listener.stop()
    assert out_path.read_text() == "bot> hello alice\n"


def test_app_load_errors_become_one_short_line():
    from waddlebot.serve import AppLoadError, summarize_traceback

    trace = (
        "Traceback (most recent call last):\n"
        '  File "/app/router_module/settings.py", line 20, in <module>\n'
        "    settings = load()\n"
        "               ^^^^^^\n"
        "waddlebot.settings.SettingsError: WADDLEBOT_API_KEYS: is required but not set\n"
    )
    line = summarize_traceback(trace)
    assert line == "SettingsError: WADDLEBOT_API_KEYS: is required but not set"
    chained = (
        trace
        + "\nDuring handling of the above exception, another exception occurred:\n\n"
        + "Traceback (most recent call last):\n"
        + '  File "/app/libs/waddlebot/db.py", line 9, in _connect_primary\n'
        + "    raise DatabaseUnavailable(\n"
        + "waddlebot.db.DatabaseUnavailable: cannot reach the database at "
        + "postgres://u@db:5432/x (DATABASE_URL): refused\n"
    )
    assert summarize_traceback(chained) == (
        "DatabaseUnavailable: cannot reach the database at postgres://u@db:5432/x "
        "(DATABASE_URL): refused"
    )
    error = AppLoadError({"router_module": line, "portal_module": "was not loaded"})
    assert str(error).splitlines() == [
        "router_module: SettingsError: WADDLEBOT_API_KEYS: is required but not set",
        "portal_module: was not loaded",
    ]


def test_chat_waits_only_for_events_that_may_answer():
    nothing = {"executions": [], "matched": {"commands": [], "event_triggers": []}}
    assert not cli.expects_reply(nothing)
    assert cli.expects_reply({"executions": [{"execution_id": "e1"}], "matched": {}})
    assert cli.expects_reply({"executions": [], "matched": {"string_rule": {"action": "warn"}}})
    # an answer of unknown shape: wait, to be safe
    assert cli.expects_reply({"status": "queued"})
    assert cli.expects_reply(None)


def test_chat_notes_an_unknown_command():
    answer = {"executions": [], "matched": {"unknown_command": "!nope"}}
    assert cli.event_notes(answer) == ["[no command !nope here; try !help]"]
    assert cli.event_notes({"executions": [], "matched": {}}) == []
    assert cli.event_notes(None) == []
