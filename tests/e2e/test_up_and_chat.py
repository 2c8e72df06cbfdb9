"""``waddlebot up`` serves the whole fleet; ``waddlebot chat`` talks to it as a collector.

Runs the real command as a subprocess on a free port with a fresh data folder: embedded
SQLite and the in-process store (no ``DATABASE_URL``, no ``REDIS_HOST``) and a generated
service key (no ``WADDLEBOT_API_KEYS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from waddlebot.serve import API_PREFIXES, APPS

pytestmark = pytest.mark.e2e

#: variables that would point the fleet away from its embedded defaults
_SCRUBBED = (
    "DATABASE_URL",
    "READ_REPLICA_URL",
    "REDIS_HOST",
    "WADDLEBOT_API_KEYS",
    "WADDLEBOT_API_KEY",
    "WADDLEBOT_DATA_DIR",
    "WADDLEBOT_PUBLIC_URL",
    "ROUTER_API_URL",
    "WADDLEBOT_APPS_FOLDER",
)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("waddlebot")
    if script.exists():
        return [str(script)]
    found = shutil.which("waddlebot")
    return [found] if found else [sys.executable, "-m", "waddlebot.cli"]


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, None


def _output(tmp: Path) -> str:
    return "".join(
        (tmp / name).read_text(errors="replace")
        for name in ("up.out", "up.err")
        if (tmp / name).exists()
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A running ``waddlebot up``: (base URL, data folder, process, log folder)."""
    tmp = tmp_path_factory.mktemp("fleet")
    data_dir = tmp / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp / "up.out").open("w") as out, (tmp / "up.err").open("w") as err:
        process = subprocess.Popen(
            [*_command(), "up", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_environment(),
            cwd=tmp,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"waddlebot up exited {process.returncode}:\n{_output(tmp)}")
            try:
                status, _ = _get(f"{url}/api/router/health")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"router health never answered 200:\n{_output(tmp)}")
            time.sleep(0.2)
        yield url, data_dir, process, tmp
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_every_app_answers_its_health_check(fleet):
    url, _, _, _ = fleet
    for app in APPS:
        status, body = _get(f"{url}{API_PREFIXES[app]}/health")
        assert status == 200, (app, body)
        assert body["status"] == "ok", (app, body)
        assert body["database"]["primary"]["status"] == "ok", (app, body)


def test_up_prints_where_everything_is(fleet):
    url, data_dir, _, tmp = fleet
    key = (data_dir / "api_key").read_text().strip()
    deadline = time.monotonic() + 15
    while "Press Ctrl-C" not in _output(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    printed = _output(tmp)
    for app in APPS:
        assert f"{url}{API_PREFIXES[app]}/health" in printed
    assert key in printed
    assert "console:demo:demo" in printed
    assert f"waddlebot chat --url {url}" in printed
    assert "Traceback" not in printed


def test_chat_help_gets_a_reply(fleet):
    url, data_dir, _, tmp = fleet
    done = subprocess.run(
        [*_command(), "chat", "--url", url, "--data-dir", str(data_dir)],
        input="!help\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(),
        cwd=tmp,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bot>" in done.stdout, done.stdout + done.stderr
    assert "!help" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_chat_does_not_wait_when_nothing_can_answer(fleet):
    url, data_dir, _, tmp = fleet
    started = time.monotonic()
    done = subprocess.run(
        [*_command(), "chat", "--url", url, "--data-dir", str(data_dir), "--wait", "20"],
        input="just saying hello\n!nosuchcommand\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(),
        cwd=tmp,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "!nosuchcommand" in done.stdout
    assert time.monotonic() - started < 15


def test_chat_reports_a_wrong_key_in_one_line(fleet):
    url, data_dir, _, tmp = fleet
    done = subprocess.run(
        [*_command(), "chat", "--url", url, "--api-key", "not-the-key"],
        input="!help\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(),
        cwd=tmp,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_up_stops_cleanly_on_sigterm(fleet):
    _, _, process, tmp = fleet
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, _output(tmp)
    assert "Traceback" not in _output(tmp)


def test_up_without_a_database_exits_1_naming_database_url(tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        [*_command(), "up", "--port", str(_free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=90,
        env=_environment(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nope"),
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "DATABASE_URL" in done.stderr, output
    assert "Traceback" not in output
    assert time.monotonic() - started < 45, output


def test_up_on_a_busy_port_exits_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*_command(), "up", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env=_environment(),
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot listen on 127.0.0.1:"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
