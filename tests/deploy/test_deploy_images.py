"""The Dockerfiles: one shared pattern, no secrets, and a CMD that really serves the app."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from deploy_support import FLEET, ROOT

from waddlebot.serve import APPS

TEMPLATE = ROOT / "docker" / "app.Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEYS|DATABASE_URL|REPLICA_URL", re.I)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _env(instructions, args: dict[str, str]) -> dict[str, str]:
    env = {}
    for word, rest in instructions:
        if word == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return env


def test_the_fleet_table_matches_the_apps_of_the_code():
    assert [app.folder for app in FLEET] == list(APPS)


def test_every_app_dockerfile_is_the_shared_pattern():
    template = TEMPLATE.read_text(encoding="utf-8")
    assert template.count("\nARG APP\n") == 1 and template.count("\nARG HEALTH_PATH\n") == 1
    for app in FLEET:
        expected = template.replace("\nARG APP\n", f"\nARG APP={app.folder}\n").replace(
            "\nARG HEALTH_PATH\n", f"\nARG HEALTH_PATH={app.health}\n"
        )
        actual = (ROOT / app.folder / "Dockerfile").read_text(encoding="utf-8")
        assert actual == expected, (
            f"{app.folder}/Dockerfile drifted from docker/app.Dockerfile: copy the template "
            "and fill in only the ARG APP / ARG HEALTH_PATH defaults"
        )


def test_the_pattern_builds_a_small_non_root_image_without_secrets():
    steps = _instructions(TEMPLATE.read_text(encoding="utf-8"))
    words = [w for w, _ in steps]
    assert steps[0] == ("FROM", "python:3.12-slim") and words.count("FROM") == 1
    copies = [rest for w, rest in steps if w == "COPY"]
    assert copies == [
        "pyproject.toml constraints.txt ./",
        "libs/ ./libs/",
        "__init__.py ./__init__.py",
        "${APP}/ ./${APP}/",
    ], "only libs and the one app go into the image"
    assert any(w == "RUN" and "pip install -c constraints.txt ." in r for w, r in steps)
    assert ("USER", "10001:10001") in steps
    assert any(w == "RUN" and "--uid 10001" in r for w, r in steps)
    assert ("EXPOSE", "8000") in steps
    assert any(w == "HEALTHCHECK" and "WADDLEBOT_HEALTH_PATH" in r for w, r in steps)
    env = _env(steps, {"APP": "x", "HEALTH_PATH": "/h"})
    assert env["GUNICORN_WORKER_CLASS"] == "gthread"  # the router's config sets gevent
    assert env["WADDLEBOT_MIGRATE"] == "false"
    assert env["WADDLEBOT_DATA_DIR"] == "/tmp/waddlebot"
    assert env["WADDLEBOT_APPS_FOLDER"] == "/srv/apps"
    for word, rest in steps:
        if word in ("ENV", "ARG"):
            assert not SECRET_NAME.search(rest), f"no secret in the image: {word} {rest}"
    cmd = json.loads(dict(steps)["CMD"])
    gunicorn = cmd[-1]
    for part in (
        "--worker-class ${GUNICORN_WORKER_CLASS:-gthread}",
        "--workers ${GUNICORN_WORKERS:-2}",
        "--threads ${GUNICORN_THREADS:-8}",
        "--bind 0.0.0.0:8000",
    ):
        assert part in gunicorn


def test_the_migrate_image_holds_every_app():
    steps = _instructions((ROOT / "docker" / "migrate.Dockerfile").read_text(encoding="utf-8"))
    copies = [rest for w, rest in steps if w == "COPY"]
    for folder in APPS:
        assert f"{folder}/ ./{folder}/" in copies, f"migrate image lacks {folder}"
    assert ("USER", "10001:10001") in steps
    assert json.loads(dict(steps)["CMD"]) == ["waddlebot", "migrate"]


def test_dockerignore_keeps_local_data_out():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines.index("*") < lines.index("!libs/"), "everything is excluded unless listed"
    for pattern in ("**/.env", "**/.data", "**/databases", "**/__pycache__"):
        assert pattern in lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_the_image_command_serves_the_router_health(tmp_path, worker_class):
    """Lay out /srv/apps as the image does and run its CMD (host gunicorn, loopback port),
    with the image's worker class and with the router's (k8s router-config)."""
    app = FLEET[0]
    dockerfile = (ROOT / app.folder / "Dockerfile").read_text(encoding="utf-8")
    steps = _instructions(dockerfile)
    apps_dir = tmp_path / "apps"
    apps_dir.mkdir()
    shutil.copyfile(ROOT / "__init__.py", apps_dir / "__init__.py")
    shutil.copytree(
        ROOT / app.folder,
        apps_dir / app.folder,
        ignore=shutil.ignore_patterns("__pycache__", "databases", "uploads", ".data"),
    )
    image_env = _env(steps, {"APP": app.folder, "HEALTH_PATH": app.health})
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        **image_env,
        "WADDLEBOT_APPS_FOLDER": str(apps_dir),
        "WADDLEBOT_DATA_DIR": str(tmp_path / "data"),
        "WADDLEBOT_API_KEYS": "deploy-test-key",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_WORKER_CLASS": worker_class,
    }
    waddlebot = str(Path(sys.executable).parent / "waddlebot")
    migrated = subprocess.run(
        [waddlebot, "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr

    port = _free_port()
    command = json.loads(dict(steps)["CMD"])
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace("0.0.0.0:8000", f"127.0.0.1:{port}")
    script = script.replace("/srv/apps", str(apps_dir))
    server = subprocess.Popen(
        ["sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}{image_env['WADDLEBOT_HEALTH_PATH']}"
                with urllib.request.urlopen(url, timeout=2) as response:
                    answer = (response.status, json.loads(response.read()))
                break
            except OSError:
                time.sleep(0.2)
        assert answer is not None, "gunicorn did not answer: " + (
            server.stdout.read().decode() if server.poll() is not None else "timeout"
        )
        status, body = answer
        assert status == 200 and body["status"] == "ok", body
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
        server.stdout.close()
