"""Errors answer clearly: JSON naming the field, plain 404s, one-line start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from waddlebot.testkit import FleetProcess

pytestmark = pytest.mark.e2e

_SCRUBBED_PREFIXES = ("DATABASE_URL", "READ_REPLICA_URL", "REDIS_", "WADDLEBOT_", "PY4WEB_")


@pytest.fixture(scope="module")
def router(tmp_path_factory, wsgi_started):
    # (the wsgi start-up checks run in the background meanwhile)
    fleet = FleetProcess(["router_module"], data_dir=tmp_path_factory.mktemp("errors"))
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"platform": "twitch"', b"\xff\xfe\xfd", b"[1, 2, 3]", b'"text"', b""],
)
def test_malformed_event_body_is_a_400_naming_body(router, body):
    answer = requests.post(
        router.url + "/api/router/events",
        data=body,
        headers={**router.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["field"] == "body", error
    assert error["code"] == "validation_error"
    assert "Traceback" not in answer.text


def test_event_missing_a_field_names_it(router):
    answer = router.post("/api/router/events", {"platform": "twitch"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "message_type", answer.text


@pytest.mark.parametrize(
    "path", ["/no/such/route", "/api/router/no-such-thing", "/api/nosuchapp/health"]
)
def test_unknown_route_is_a_404_without_traceback(router, path):
    for headers in ({}, router.headers):
        answer = requests.get(router.url + path, headers=headers, timeout=10)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "Traceback" not in answer.text
        assert 'File "' not in answer.text


def test_wrong_method_is_refused_without_traceback(router):
    answer = requests.delete(router.url + "/api/router/health", timeout=10)
    assert answer.status_code in (404, 405), answer.status_code
    # (the framework's stock 405 page has an empty "Traceback:" heading; no stack trace)
    assert "Traceback (most recent call last)" not in answer.text
    assert 'File "' not in answer.text


def test_errors_leave_no_traceback_in_the_log(router):
    router.post("/api/router/events", None, data=b"{oops")
    assert "Traceback" not in router.logs(), router.logs()[-3000:]


_WSGI_CASES = {
    "no_keys": {},
    "bad_redis_port": {"WADDLEBOT_API_KEYS": "k", "REDIS_PORT": "abc"},
}


@pytest.fixture(scope="module")
def wsgi_started(tmp_path_factory):
    """``wsgi_app('router_module')`` started with each bad environment (in parallel)."""
    running = {}
    for name, env in _WSGI_CASES.items():
        tmp = tmp_path_factory.mktemp(f"wsgi-{name}")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        clean.update({"WADDLEBOT_DATA_DIR": str(tmp / "data"), **env})
        running[name] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from waddlebot.serve import wsgi_app; wsgi_app('router_module')",
            ],
            env=clean,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield running
    for process in running.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def wsgi_runs(wsgi_started) -> dict[str, subprocess.CompletedProcess]:
    """The finished start-up attempts."""
    done = {}
    for name, process in wsgi_started.items():
        stdout, stderr = process.communicate(timeout=60)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def test_wsgi_without_api_keys_exits_1_naming_the_variable(wsgi_runs):
    done = wsgi_runs["no_keys"]
    assert done.returncode == 1, done.stderr
    assert "WADDLEBOT_API_KEYS" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: router_module:"), done.stderr


def test_wsgi_with_a_bad_value_names_it(wsgi_runs):
    done = wsgi_runs["bad_redis_port"]
    assert done.returncode == 1, done.stderr
    assert "REDIS_PORT" in done.stderr and "abc" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
