"""POST /api/modules/register: validation naming the field, idempotent re-registration."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "change, field",
    [
        ({"type": "ftp"}, "commands[0].type"),
        ({"prefix": "?"}, "commands[0].prefix"),
        ({"min_role": "god"}, "commands[0].min_role"),
        ({"timeout": "10"}, "commands[0].timeout"),
        ({"execution_mode": "eventually"}, "commands[0].execution_mode"),
        ({"trigger_type": "sometimes"}, "commands[0].trigger_type"),
        ({"headers": {"X-Num": 1}}, "commands[0].headers"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_registration_refuses_bad_command(pg_router, uniq, change, field):
    name = uniq("badreg")
    payload = {
        "module_name": name,
        "module_type": "interaction",
        "endpoint_url": "http://127.0.0.1:9",
        "commands": [{"command": uniq("c"), **change}],
    }

    answer = pg_router.post("/api/modules/register", payload)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    assert answer.json()["error"]["code"] == "validation_error"
    # nothing was written: the module is unknown
    beat = pg_router.post("/api/modules/heartbeat", {"module_name": name})
    assert beat.status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        ({"module_type": "plugin"}, "module_type"),
        ({"module_name": 42}, "module_name"),
        ({"core": "yes"}, "core"),
        ({"commands": {"command": "x"}}, "commands"),
        ({"module_type": "collector", "platform": "myspace"}, "platform"),
    ],
    ids=["module_type", "module_name", "core", "commands", "platform"],
)
def test_registration_refuses_bad_module(pg_router, uniq, change, field):
    payload = {"module_name": uniq("badmod"), "endpoint_url": "http://127.0.0.1:9", **change}

    answer = pg_router.post("/api/modules/register", payload)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def test_reregistration_updates_in_place(pg_router, stubs, channel, uniq):
    stub = stubs()
    stub.route("POST", r"/(?P<name>[a-z0-9]+)", lambda r: {"chat_message": f"{r.match['name']}"})
    name, keep, drop = uniq("regmod"), uniq("keep"), uniq("drop")
    spec = {"module_name": name, "module_version": "1.0.0", "endpoint_url": stub.url, "core": True}

    first = pg_router.register(
        {
            **spec,
            "commands": [
                {"command": keep, "location_url": f"/{keep}"},
                {"command": drop, "location_url": f"/{drop}"},
            ],
        }
    )
    again = pg_router.register(
        {
            **spec,
            "commands": [
                {"command": keep, "location_url": f"/{keep}"},
                {"command": drop, "location_url": f"/{drop}"},
            ],
        }
    )
    assert first["created"] is True and first["commands"] == 2
    assert again["created"] is False and again["module_id"] == first["module_id"]
    assert again["deactivated"] == 0
    assert pg_router.chat(f"!{drop}", channel)["executions"][0]["status"] == "success"

    updated = pg_router.register(
        {
            **spec,
            "module_version": "1.1.0",
            "commands": [{"command": keep, "location_url": f"/{keep}", "description": "v2"}],
        }
    )

    assert updated["created"] is False and updated["module_id"] == first["module_id"]
    assert updated["commands"] == 1 and updated["deactivated"] == 1
    everything = pg_router.get("/api/router/commands", params={"module": name}).json()
    assert everything["total"] == 2, "re-registering must not duplicate command rows"
    state = {c["command"]: (c["is_active"], c["description"]) for c in everything["items"]}
    assert state == {keep: (True, "v2"), drop: (False, "")}
    inactive = pg_router.get("/api/router/commands", params={"module": name, "active": "false"})
    assert [c["command"] for c in inactive.json()["items"]] == [drop]

    dropped = pg_router.chat(f"!{drop}", channel)
    kept = pg_router.chat(f"!{keep}", channel)

    assert dropped["matched"].get("unknown_command") == f"!{drop}"
    assert dropped["executions"] == []
    assert kept["executions"][0]["status"] == "success"
    assert [r.path for r in stub.received()] == [f"/{drop}", f"/{keep}"]
