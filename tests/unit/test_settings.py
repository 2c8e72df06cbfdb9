"""``waddlebot.settings``: typed environment reading, errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from waddlebot.settings import CommonSettings, Env, Secret, SettingsError, load_common

BASE = {"WADDLEBOT_API_KEYS": "k1"}


def _settings(**env: str) -> CommonSettings:
    return load_common({**BASE, **env}, module_name="test_module")


# -- Env ------------------------------------------------------------------------------


def test_str_required_missing_names_the_variable():
    with pytest.raises(SettingsError) as caught:
        Env({}).str("SOME_VAR")
    assert caught.value.variable == "SOME_VAR"
    assert str(caught.value).startswith("SOME_VAR:")


def test_empty_value_counts_as_unset():
    assert Env({"X": ""}).str("X", "fallback") == "fallback"
    with pytest.raises(SettingsError):
        Env({"X": ""}).str("X")


def test_default_none_is_allowed():
    assert Env({}).str("X", None) is None
    assert Env({}).int("X", None) is None


def test_int_parses_and_bounds():
    assert Env({"N": "42"}).int("N") == 42
    assert Env({"N": "-3"}).int("N") == -3
    with pytest.raises(SettingsError) as caught:
        Env({"N": "abc"}).int("N")
    assert caught.value.variable == "N" and "'abc'" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Env({"N": "1.5"}).int("N")
    assert caught.value.variable == "N"
    with pytest.raises(SettingsError) as caught:
        Env({"N": "0"}).int("N", minimum=1)
    assert caught.value.variable == "N" and ">= 1" in str(caught.value)


def test_float_parses_and_bounds():
    assert Env({"F": "2.5"}).float("F") == 2.5
    assert Env({}).float("F", 30.0) == 30.0
    with pytest.raises(SettingsError) as caught:
        Env({"F": "soon"}).float("F")
    assert caught.value.variable == "F"
    with pytest.raises(SettingsError) as caught:
        Env({"F": "0.01"}).float("F", minimum=0.1)
    assert caught.value.variable == "F"


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "On", " true "])
def test_bool_true_spellings(raw):
    assert Env({"B": raw}).bool("B") is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_bool_false_spellings(raw):
    assert Env({"B": raw}).bool("B") is False


def test_bool_default_and_bad_value():
    assert Env({}).bool("B", False) is False
    assert Env({}).bool("B", True) is True
    with pytest.raises(SettingsError) as caught:
        Env({"B": "maybe"}).bool("B")
    assert caught.value.variable == "B"


def test_list_drops_blanks_and_strips():
    assert Env({"L": " a, ,b ,, c "}).list("L") == ("a", "b", "c")
    assert Env({}).list("L", ()) == ()
    assert Env({}).list("L", ["x"]) == ("x",)


def test_choice():
    assert Env({"C": "INFO"}).choice("C", ("INFO", "DEBUG")) == "INFO"
    assert Env({}).choice("C", ("INFO", "DEBUG"), default="DEBUG") == "DEBUG"
    with pytest.raises(SettingsError) as caught:
        Env({"C": "LOUD"}).choice("C", ("INFO", "DEBUG"))
    assert caught.value.variable == "C" and "INFO, DEBUG" in str(caught.value)


def test_secret_reader_wraps_values():
    value = Env({"S": "hunter2"}).secret("S")
    assert isinstance(value, Secret) and value.reveal() == "hunter2"
    empty = Env({}).secret("S", "")
    assert isinstance(empty, Secret) and not empty and empty.reveal() == ""


def test_env_defaults_to_process_environment(monkeypatch):
    monkeypatch.setenv("WADDLEBOT_UNIT_PROBE", "seen")
    assert Env().str("WADDLEBOT_UNIT_PROBE") == "seen"


# -- load_common ----------------------------------------------------------------------


def test_defaults_are_embedded(tmp_path):
    settings = _settings(WADDLEBOT_DATA_DIR=str(tmp_path))
    assert settings.module_name == "test_module"
    assert settings.data_dir == tmp_path.resolve()
    assert settings.is_embedded
    assert settings.database_url.reveal() == f"sqlite://{tmp_path.resolve() / 'waddlebot.sqlite'}"
    assert not settings.read_replica_url
    assert settings.redis_host is None
    assert settings.redis_port == 6379
    assert settings.migrate is False
    assert settings.api_keys == (Secret("k1"),)
    assert settings.log_level == "INFO"
    assert settings.webhook_allow_private_networks is False
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.router_api_url == settings.public_base_url


def test_relative_data_dir_is_made_absolute():
    settings = _settings(WADDLEBOT_DATA_DIR="some/dir")
    assert settings.data_dir.is_absolute()
    assert settings.data_dir == Path("some/dir").resolve()


def test_postgres_url_is_not_embedded():
    settings = _settings(DATABASE_URL="postgresql://u:p@db/x")
    assert not settings.is_embedded


def test_urls_lose_their_trailing_slash():
    settings = _settings(
        WADDLEBOT_PUBLIC_URL="https://bot.example.org/", ROUTER_API_URL="http://router:8000/"
    )
    assert settings.public_base_url == "https://bot.example.org"
    assert settings.router_api_url == "http://router:8000"


def test_router_url_defaults_to_public_url():
    settings = _settings(WADDLEBOT_PUBLIC_URL="https://bot.example.org")
    assert settings.router_api_url == "https://bot.example.org"


def test_several_api_keys():
    settings = load_common({"WADDLEBOT_API_KEYS": "a, b,,c"}, module_name="m")
    assert [k.reveal() for k in settings.api_keys] == ["a", "b", "c"]


@pytest.mark.parametrize("raw", [None, "", " , ,"])
def test_api_keys_are_required(raw):
    environ = {} if raw is None else {"WADDLEBOT_API_KEYS": raw}
    with pytest.raises(SettingsError) as caught:
        load_common(environ, module_name="m")
    assert caught.value.variable == "WADDLEBOT_API_KEYS"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_PORT", "abc"),
        ("REDIS_PORT", "0"),
        ("REDIS_DB", "-1"),
        ("DB_POOL_SIZE", "many"),
        ("REQUEST_TIMEOUT", "fast"),
        ("REQUEST_TIMEOUT", "0"),
        ("LOG_LEVEL", "CHATTY"),
        ("WADDLEBOT_MIGRATE", "perhaps"),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "2"),
    ],
)
def test_bad_values_name_their_variable(variable, value):
    with pytest.raises(SettingsError) as caught:
        _settings(**{variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert repr(value) in str(caught.value) or value in str(caught.value)


def test_settings_are_frozen():
    settings = _settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.redis_port = 1  # type: ignore[misc]


def test_secrets_never_appear_in_the_settings_repr():
    settings = _settings(
        DATABASE_URL="postgresql://waddle:db-pass-123@db/x",
        READ_REPLICA_URL="postgresql://waddle:replica-pass-456@db2/x",
        REDIS_PASSWORD="redis-pass-789",
        WADDLEBOT_API_KEYS="service-key-abc,service-key-def",
    )
    text = repr(settings) + str(settings)
    for secret in ("db-pass-123", "replica-pass-456", "redis-pass-789", "service-key-abc"):
        assert secret not in text
    assert "Secret('**********')" in text
    assert settings.redis_password.reveal() == "redis-pass-789"
