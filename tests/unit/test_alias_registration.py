"""Alias names registered with the router: payloads, shards of 200, stale shards dropped.

The module is loaded from its file so that importing it does not start the alias app.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from waddlebot.http import HttpError

_PATH = (
    Path(__file__).resolve().parents[2]
    / "alias_interaction_module"
    / "services"
    / "registration.py"
)


def _load():
    name = "alias_registration_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


reg = _load()


def payloads(names):
    return reg.registration_payloads(
        module_name="alias", module_version="1.0.0", endpoint_url="http://a:8000", names=names
    )


def test_one_payload_with_the_manage_command_first():
    [payload] = payloads(["so-me", "hi", "hi"])
    assert payload["module_name"] == "alias"
    assert payload["core"] is True
    assert payload["module_type"] == "interaction"
    assert payload["endpoint_url"] == "http://a:8000"
    commands = payload["commands"]
    assert [c["command"] for c in commands] == ["alias", "hi", "so-me"]
    assert commands[0]["location_url"] == "/api/alias/manage"
    assert {c["location_url"] for c in commands[1:]} == {"/api/alias/run"}
    assert {c["min_role"] for c in commands} == {"member"}


def test_names_spread_over_shards_of_at_most_200_commands():
    names = [f"n{i:03d}" for i in range(450)]
    found = payloads(names)
    assert [p["module_name"] for p in found] == ["alias", "alias-2", "alias-3"]
    assert [len(p["commands"]) for p in found] == [200, 200, 51]
    listed = [c["command"] for p in found for c in p["commands"]]
    assert listed == ["alias", *sorted(names)]


def test_own_modules_are_recognised():
    assert reg.is_own_module("alias", "alias")
    assert reg.is_own_module("alias", "alias-12")
    assert not reg.is_own_module("alias", "alias-x")
    assert not reg.is_own_module("alias", "aliases")
    assert not reg.is_own_module("alias", "shoutout")


class FakeRouter:
    def __init__(self, listed=()):
        self.registered: list[dict] = []
        self.listed = [
            types.SimpleNamespace(module_name=m, command=c, prefix="!", trigger_type="command")
            for m, c in listed
        ]
        self.fail = False

    def register(self, payload):
        if self.fail:
            raise HttpError("router down", url="http://router")
        self.registered.append(payload)
        return {"created": False}

    def commands(self):
        return self.listed


def registrar(router, names):
    return reg.AliasRegistrar(
        router=router,
        module_name="alias",
        module_version="1.0.0",
        endpoint_url="http://a:8000/",
        names=lambda: list(names),
    )


def test_sync_empties_shards_that_are_no_longer_needed():
    router = FakeRouter(
        listed=[("alias", "hi"), ("alias-2", "zz"), ("alias-3", "zzz"), ("shoutout", "so")]
    )
    names = ["hi"]
    syncing = registrar(router, names)
    syncing.sync()
    assert [(p["module_name"], len(p["commands"])) for p in router.registered] == [
        ("alias", 2),
        ("alias-2", 0),
        ("alias-3", 0),
    ]
    assert router.registered[0]["endpoint_url"] == "http://a:8000"

    # the next sync with as many shards does not list the router's commands again
    router.registered.clear()
    router.listed = []
    names.append("yo")
    syncing.sync()
    assert [p["module_name"] for p in router.registered] == ["alias"]


def test_sync_failure_propagates_and_the_background_registration_retries():
    router = FakeRouter()
    router.fail = True
    syncing = registrar(router, ["hi"])
    with pytest.raises(HttpError):
        syncing.sync()
    background = reg._SyncingRegistration(
        syncing, router_url="http://router", api_key="k", payload={"module_name": "alias"}
    )
    assert background.register_once() is False
    assert "router down" in background.last_error
    router.fail = False
    assert background.register_once() is True
    assert background.registered.is_set()
