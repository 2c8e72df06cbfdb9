"""Execution engines over real HTTP: container, Lambda, OpenWhisk, webhook, and failures.

The router runs as a process (``waddlebot up --apps router_module``); modules are
:class:`StubServer`s, Lambda and OpenWhisk are the testkit's protocol stubs. Every
chat reply must reach the console collector stub (DESIGN §5 "Delivery has one path").
"""

from __future__ import annotations

import base64
import time

import pytest

from waddlebot.testkit import free_port

pytestmark = pytest.mark.integration


def _entity(channel: str) -> str:
    return f"console:{channel}:{channel}"


# -- container ------------------------------------------------------------------------------
def test_container_command_answered_by_module(any_router, stubs, channel, uniq):
    router = any_router
    module = stubs()
    module.route("POST", r"/api/mod/run", {"response_action": "chat", "chat_message": "pong"})
    command, name, user = uniq("ping"), uniq("mod"), uniq("user")
    router.register_module(
        name,
        module.url,
        [{"command": command, "type": "container", "location_url": "/api/mod/run", "timeout": 5}],
    )

    answer = router.chat(f'!{command} one "two three"', channel, user=user, user_name="Alice")

    entity_id = _entity(channel)
    assert answer["status"] == "processed"
    assert answer["entity_id"] == entity_id
    assert answer["matched"]["commands"] == [f"!{command}"]
    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    assert execution["module"] == name and execution["command"] == f"!{command}"

    [call] = module.received("POST", r"/api/mod/run")
    assert call.headers.get("X-API-Key") == router.api_key
    payload = call.json
    bot_user = router.post(
        "/api/context", {"platform": "console", "user_id": user, "user_name": "Alice"}
    ).json()["user"]
    standing = router.get(
        "/api/reputation", params={"entity_id": entity_id, "user_id": user}
    ).json()
    assert payload == {
        "session_id": answer["session_id"],
        "execution_id": execution["execution_id"],
        "entity_id": entity_id,
        "community_id": standing["community_id"],
        "platform": "console",
        "server_id": channel,
        "channel_id": channel,
        "user": {"id": bot_user["id"], "platform_user_id": user, "name": "Alice", "role": "member"},
        "command": command,
        "prefix": "!",
        "args": ["one", "two three"],
        "args_text": 'one "two three"',
        "message_content": f'!{command} one "two three"',
        "message_type": "chatMessage",
        "metadata": {},
    }

    [reply] = router.replies(entity_id)
    assert reply["chat_message"] == "pong"
    assert reply["response_action"] == "chat"
    assert reply["platform"] == "console"
    assert (reply["server_id"], reply["channel_id"], reply["user_id"]) == (channel, channel, user)
    assert reply["session_id"] == answer["session_id"]
    assert reply["execution_id"] == execution["execution_id"]
    [push] = router.reply_requests(entity_id)
    assert push.path == "/api/console/responses"
    assert push.headers.get("X-API-Key") == router.api_key


def test_help_reaches_console_collector(any_router, stubs, channel, uniq):
    router = any_router
    module = stubs()
    command = uniq("hlp")
    router.register_module(uniq("mod"), module.url, [{"command": command, "location_url": "/run"}])

    answer = router.chat("!help", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "success"
    assert execution["module"] == "router"
    [reply] = router.replies(_entity(channel))
    assert reply["chat_message"].startswith("Commands you can use here:")
    listed = reply["chat_message"].split(":", 1)[1]
    assert "!help" in listed and f"!{command}" in listed
    [push] = router.reply_requests(_entity(channel))
    assert push.path == "/api/console/responses"
    assert push.headers.get("X-API-Key") == router.api_key


def test_help_with_many_commands_fits_chat_limit(pg_router, pg, channel, uniq):
    # a community with many long commands: !help must still answer, within 4000 chars
    name, stem = uniq("bulk"), uniq("h")
    commands = [{"command": f"{stem}{i:03d}".ljust(60, "x")} for i in range(80)]
    pg_router.register_module(name, "http://127.0.0.1:9", commands, core=False)
    pg(
        "INSERT INTO command_permissions (command_id, entity_id, is_enabled, usage_count)"
        " SELECT id, %s, 'T', 0 FROM commands WHERE module_name = %s",
        (_entity(channel), name),
    )
    pg_router.sync()

    answer = pg_router.chat("!help", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [reply] = pg_router.replies(_entity(channel))
    text = reply["chat_message"]
    assert text.startswith("Commands you can use here:") and len(text) <= 4000
    assert f"!{stem}000" in text and text.endswith("…")


# -- lambda ---------------------------------------------------------------------------------
def test_lambda_engine_invokes_prefixed_function(pg_router, lambda_functions, channel, uniq):
    location, command = uniq("fn-"), uniq("lam")
    seen: list[dict] = []

    def handler(payload: dict) -> dict:
        seen.append(payload)
        return {"response_action": "chat", "chat_message": f"lambda: {payload['args_text']}"}

    lambda_functions[f"waddlebot-{location}"] = handler
    pg_router.register_module(
        uniq("lmod"), None, [{"command": command, "type": "lambda", "location_url": location}]
    )

    answer = pg_router.chat(f"!{command} hello world", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [payload] = seen
    assert payload["session_id"] == answer["session_id"]
    assert payload["execution_id"] == execution["execution_id"]
    assert payload["args"] == ["hello", "world"] and payload["command"] == command
    [reply] = pg_router.replies(_entity(channel))
    assert reply["chat_message"] == "lambda: hello world"


def test_lambda_function_error_is_failed_execution(pg_router, lambda_functions, pg, channel, uniq):
    location, command = uniq("fn-"), uniq("lamx")

    def boom(payload: dict) -> dict:
        raise RuntimeError("kaboom in lambda")

    lambda_functions[f"waddlebot-{location}"] = boom
    pg_router.register_module(
        uniq("lmod"), None, [{"command": command, "type": "lambda", "location_url": location}]
    )

    answer = pg_router.chat(f"!{command}", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "failed"
    assert "kaboom in lambda" in execution["error"]
    [(status, error)] = pg(
        "SELECT status, error_message FROM command_executions WHERE execution_id = %s",
        (execution["execution_id"],),
    )
    assert status == "failed" and "kaboom" in error
    [reply] = pg_router.replies(_entity(channel))
    assert f"!{command}" in reply["chat_message"]
    assert "unavailable" in reply["chat_message"]


# -- openwhisk ------------------------------------------------------------------------------
def test_openwhisk_engine_with_basic_auth(
    pg_router, openwhisk_server, openwhisk_actions, channel, uniq
):
    action, command = uniq("act"), uniq("ow")
    seen: list[dict] = []

    def handler(params: dict) -> dict:
        seen.append(params)
        return {"response_action": "chat", "chat_message": "whisked"}

    openwhisk_actions[action] = handler
    pg_router.register_module(
        uniq("owmod"), None, [{"command": command, "type": "openwhisk", "location_url": action}]
    )

    answer = pg_router.chat(f"!{command} x", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [call] = openwhisk_server.received("POST", rf"/api/v1/namespaces/waddlebot/actions/{action}")
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(b"user:pass").decode()
    assert "blocking=true" in call.query
    assert seen[0]["execution_id"] == execution["execution_id"]
    [reply] = pg_router.replies(_entity(channel))
    assert reply["chat_message"] == "whisked"


# -- webhook --------------------------------------------------------------------------------
def test_webhook_engine_honours_method_and_headers(pg_router, stubs, channel, uniq):
    hook = stubs()
    hook.route("PUT", r"/hooks/in", {"response_action": "chat", "chat_message": "hooked"})
    command = uniq("wh")
    pg_router.register_module(
        uniq("whmod"),
        None,
        [
            {
                "command": command,
                "type": "webhook",
                "location_url": f"{hook.url}/hooks/in",
                "method": "PUT",
                "headers": {"X-Custom-Token": "s3cret", "X-Other": "two"},
            }
        ],
    )

    answer = pg_router.chat(f"!{command} a", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "success", execution
    [call] = hook.received()
    assert call.method == "PUT" and call.path == "/hooks/in"
    assert call.headers.get("X-Custom-Token") == "s3cret"
    assert call.headers.get("X-Other") == "two"
    assert call.json["execution_id"] == execution["execution_id"]
    assert call.json["args"] == ["a"]
    [reply] = pg_router.replies(_entity(channel))
    assert reply["chat_message"] == "hooked"


# -- failures -------------------------------------------------------------------------------
def test_timeout_is_reported_fast(pg_router, stubs, pg, channel, uniq):
    module = stubs()

    def slow(_request):
        time.sleep(2.5)
        return {"response_action": "chat", "chat_message": "too late"}

    module.route("POST", r"/slow", slow)
    command = uniq("slow")
    pg_router.register_module(
        uniq("slowmod"), module.url, [{"command": command, "location_url": "/slow", "timeout": 1}]
    )

    started = time.monotonic()
    answer = pg_router.chat(f"!{command}", channel)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, elapsed
    [execution] = answer["executions"]
    assert execution["status"] == "timeout"
    [(status,)] = pg(
        "SELECT status FROM command_executions WHERE execution_id = %s",
        (execution["execution_id"],),
    )
    assert status == "timeout"
    [reply] = pg_router.replies(_entity(channel))
    assert "timed out" in reply["chat_message"] and f"!{command}" in reply["chat_message"]


def test_module_down_is_failed_execution(pg_router, pg, channel, uniq):
    command = uniq("down")
    closed = f"http://127.0.0.1:{free_port()}"
    pg_router.register_module(uniq("downmod"), closed, [{"command": command, "timeout": 2}])

    answer = pg_router.chat(f"!{command}", channel)

    [execution] = answer["executions"]
    assert execution["status"] == "failed"
    assert "cannot reach module" in execution["error"]
    [(status, error)] = pg(
        "SELECT status, error_message FROM command_executions WHERE execution_id = %s",
        (execution["execution_id"],),
    )
    assert status == "failed" and error
    [reply] = pg_router.replies(_entity(channel))
    assert "unavailable" in reply["chat_message"]


@pytest.mark.parametrize(
    "answer, error",
    [
        pytest.param((200, "this is <b>not</b> JSON"), "non-JSON", id="non-json"),
        pytest.param((500, {"error": "internal"}), "HTTP 500", id="http-500"),
        pytest.param((502, "Bad Gateway"), "non-JSON", id="http-502-text"),
        pytest.param((200, {"weird": True}), "module answer invalid", id="no-response-action"),
    ],
)
def test_module_answering_garbage_is_failed(pg_router, stubs, pg, channel, uniq, answer, error):
    module = stubs()
    module.route("POST", r"/run", lambda _request: answer)
    command = uniq("junk")
    pg_router.register_module(
        uniq("junkmod"), module.url, [{"command": command, "location_url": "/run"}]
    )

    result = pg_router.chat(f"!{command}", channel)

    [execution] = result["executions"]
    assert execution["status"] == "failed"
    assert error in execution["error"]
    assert len(module.received()) == 1
    [(status,)] = pg(
        "SELECT status FROM command_executions WHERE execution_id = %s",
        (execution["execution_id"],),
    )
    assert status == "failed"
    [reply] = pg_router.replies(_entity(channel))
    assert "unavailable" in reply["chat_message"]
