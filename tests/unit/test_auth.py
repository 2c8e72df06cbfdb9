"""``waddlebot.auth`` and secrets: constant-time service keys, redaction, clear errors."""

from __future__ import annotations

import json
import types

import pytest
from py4web.core import HTTP, Fixture

from waddlebot import auth
from waddlebot.auth import KongConsumer, ServiceKey
from waddlebot.settings import Secret, SettingsError, load_common


def _keys(*values: str) -> ServiceKey:
    return ServiceKey([Secret(v) for v in values])


# -- ServiceKey.is_valid_key ----------------------------------------------------------


def test_accepts_every_configured_key():
    keys = _keys("alpha", "a-much-longer-second-key")
    assert keys.is_valid_key("alpha")
    assert keys.is_valid_key("a-much-longer-second-key")


@pytest.mark.parametrize("presented", [None, "", "alph", "alphaa", "ALPHA", " alpha", "beta"])
def test_refuses_anything_else(presented):
    assert not _keys("alpha", "gamma").is_valid_key(presented)


def test_empty_configured_keys_never_match():
    keys = ServiceKey([Secret(""), Secret("real")])
    assert not keys.is_valid_key("")
    assert keys.is_valid_key("real")
    assert not ServiceKey([]).is_valid_key("anything")


def test_every_key_is_compared_even_after_a_match(monkeypatch):
    """Constant time: the loop does not stop at the first (or any) match."""
    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = _keys("first", "second", "third-key-of-another-length")
    assert keys.is_valid_key("first")
    assert len(calls) == 3
    # digests: every comparison is between equal-length values, whatever the key lengths
    assert all(a == b == 32 for a, b in calls)
    calls.clear()
    assert not keys.is_valid_key("nope")
    assert len(calls) == 3


def test_keys_are_not_kept_in_clear():
    keys = _keys("plain-text-key")
    assert "plain-text-key" not in repr(vars(keys))


# -- ServiceKey as a fixture ----------------------------------------------------------


def _fake_request(monkeypatch, headers: dict):
    monkeypatch.setattr(auth, "request", types.SimpleNamespace(headers=headers))


def test_missing_header_is_401(monkeypatch):
    _fake_request(monkeypatch, {})
    with pytest.raises(HTTP) as caught:
        _keys("k").on_request({})
    assert caught.value.status == 401
    body = json.loads(caught.value.body)
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["field"] == "X-API-Key"
    assert caught.value.headers["Content-Type"] == "application/json"


def test_wrong_key_is_403(monkeypatch):
    _fake_request(monkeypatch, {"X-API-Key": "wrong"})
    with pytest.raises(HTTP) as caught:
        _keys("k").on_request({})
    assert caught.value.status == 403
    body = json.loads(caught.value.body)
    assert body["error"]["code"] == "forbidden"
    assert "wrong" not in caught.value.body


def test_right_key_passes(monkeypatch):
    _fake_request(monkeypatch, {"X-API-Key": "k"})
    assert _keys("other", "k").on_request({}) is None


def test_kong_consumer_reads_headers(monkeypatch):
    _fake_request(
        monkeypatch,
        {"X-Consumer-Username": "bot-admin", "X-Consumer-Groups": "admins, services,,"},
    )
    consumer = KongConsumer()
    consumer.on_request({})
    try:
        assert consumer.username == "bot-admin"
        assert consumer.groups == frozenset({"admins", "services"})
    finally:
        Fixture.local_delete(consumer)


def test_kong_consumer_without_kong(monkeypatch):
    _fake_request(monkeypatch, {})
    consumer = KongConsumer()
    consumer.on_request({})
    try:
        assert consumer.username is None
        assert consumer.groups == frozenset()
    finally:
        Fixture.local_delete(consumer)


# -- Secret ---------------------------------------------------------------------------


def test_secret_repr_and_str_are_redacted():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert "hunter2" not in repr([secret, {"k": secret}])
    assert repr(secret) == "Secret('**********')"
    assert repr(Secret("")) == "Secret('')"


def test_secret_value_semantics():
    assert Secret("a").reveal() == "a"
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1
    assert bool(Secret("a")) and not bool(Secret(""))


def test_secret_has_no_dict_to_leak():
    assert not hasattr(Secret("x"), "__dict__")


# -- SettingsError names the variable -------------------------------------------------


def test_missing_api_keys_named():
    with pytest.raises(SettingsError) as caught:
        load_common({}, module_name="m")
    assert caught.value.variable == "WADDLEBOT_API_KEYS"
    assert "WADDLEBOT_API_KEYS" in str(caught.value)


def test_bad_redis_port_named():
    with pytest.raises(SettingsError) as caught:
        load_common({"WADDLEBOT_API_KEYS": "k", "REDIS_PORT": "abc"}, module_name="m")
    assert caught.value.variable == "REDIS_PORT"
    assert "REDIS_PORT" in str(caught.value) and "abc" in str(caught.value)


def test_settings_error_does_not_leak_other_secrets():
    with pytest.raises(SettingsError) as caught:
        load_common({"WADDLEBOT_API_KEYS": "top-secret-key", "REDIS_PORT": "abc"}, module_name="m")
    assert "top-secret-key" not in str(caught.value)
