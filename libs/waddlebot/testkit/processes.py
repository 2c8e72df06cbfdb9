"""Run WaddleBot apps as real processes on free ports, the way an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HEALTH_PATHS = {
    "router_module": "/api/router/health",
    "marketplace_module": "/api/marketplace/health",
    "portal_module": "/api/portal/health",
    "labels_core_module": "/api/labels/health",
    "kong_admin_broker": "/api/broker/v1/health",
    "twitch_module": "/api/twitch/health",
    "discord_module": "/api/discord/health",
    "slack_module": "/api/slack/health",
    "ai_interaction_module": "/api/ai/v1/health",
    "alias_interaction_module": "/api/alias/health",
    "shoutout_interaction_module": "/api/shoutout/health",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FleetProcess:
    """``waddlebot up`` for chosen apps in a subprocess, with its own data dir and key.

    ``server="gunicorn"`` runs one app as a deployment does instead: ``waddlebot
    migrate`` first (the migrate job), then gunicorn with ``worker_class`` (gthread or
    gevent), one worker, the app's ``wsgi.py``. No demo data.
    """

    def __init__(
        self,
        apps: list[str] | None = None,
        *,
        env: dict | None = None,
        data_dir: str | Path | None = None,
        api_key: str = "test-key",
        port: int | None = None,
        server: str = "up",
        worker_class: str = "gthread",
    ):
        if server not in ("up", "gunicorn"):
            raise ValueError(f"server must be 'up' or 'gunicorn', not {server!r}")
        if server == "gunicorn" and (not apps or len(apps) != 1):
            raise ValueError("gunicorn serves exactly one app: pass apps=[<app>]")
        self.server = server
        self.worker_class = worker_class
        self.apps = apps
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="waddlebot-test-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "fleet.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "READ_REPLICA_URL", "REDIS_"))
        }
        base.update(
            {
                "WADDLEBOT_API_KEYS": api_key,
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                "LOG_LEVEL": "INFO",
            }
        )
        base.update(env or {})
        self.env = base
        self.process: subprocess.Popen | None = None

    @property
    def headers(self) -> dict:
        """Headers carrying the service key."""
        return {"X-API-Key": self.api_key}

    def _up_command(self) -> tuple[list[str], dict]:
        command = [
            sys.executable,
            "-m",
            "waddlebot.cli",
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.apps:
            command += ["--apps", ",".join(self.apps)]
        return command, self.env

    def _gunicorn_command(self, log) -> tuple[list[str], dict]:
        """``waddlebot migrate``, then the image's way of serving."""
        from waddlebot.cli import env_defaults
        from waddlebot.serve import apps_folder

        env = {**self.env, "WADDLEBOT_DATA_DIR": str(self.data_dir)}
        env.update(env_defaults(env, data_dir=self.data_dir, local_url=self.url))
        prepared = subprocess.run(
            [sys.executable, "-m", "waddlebot.cli", "migrate", "--data-dir", str(self.data_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        if prepared.returncode != 0:
            raise RuntimeError(f"migration before gunicorn failed:\n{self.logs()[-3000:]}")
        folder = apps_folder()
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "--worker-class",
            self.worker_class,
            "--workers",
            "1",
            "--threads",
            "8",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(folder),
            "--pythonpath",
            str(folder / self.apps[0]),
            "--no-control-socket",
            "--graceful-timeout",
            "5",
            "wsgi:application",
        ]
        return command, {**env, "WADDLEBOT_MIGRATE": "false"}

    def start(self, timeout: float = 60.0) -> FleetProcess:
        """Start and wait until every chosen app answers its health check."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        if self.server == "gunicorn":
            command, env = self._gunicorn_command(log)
        else:
            command, env = self._up_command()
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        paths = [HEALTH_PATHS[a] for a in (self.apps or ["router_module"])]
        deadline = time.monotonic() + timeout
        pending = list(paths)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"fleet exited with {self.process.returncode}:\n{self.logs()[-3000:]}"
                )
            try:
                if requests.get(self.url + pending[0], timeout=2).status_code < 500:
                    pending.pop(0)
                    continue
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fleet not healthy after {timeout}s:\n{self.logs()[-3000:]}")
            time.sleep(0.1)
        return self

    def logs(self) -> str:
        """Everything the process printed."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        code = self.process.returncode
        self.process = None
        return code

    def restart(self, timeout: float = 60.0) -> FleetProcess:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET with the service key."""
        kwargs.setdefault("headers", self.headers)
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, json=None, **kwargs) -> requests.Response:
        """POST JSON with the service key."""
        kwargs.setdefault("headers", self.headers)
        return requests.post(
            self.url + path, json=json, timeout=kwargs.pop("timeout", 30), **kwargs
        )

    def register(
        self,
        name: str,
        endpoint_url: str,
        commands: list[dict] | None = None,
        *,
        collector_for: str | None = None,
        core: bool = True,
        **fields,
    ) -> dict:
        """Register a module with the router (DESIGN §5), or with ``collector_for`` the
        collector of that platform; ``fields`` adds others of the payload
        (``health_check_url``, ``module_version``…). Fails the caller with the router's
        answer if refused."""
        payload: dict = {"module_name": name, "endpoint_url": endpoint_url}
        if collector_for:
            payload.update(module_type="collector", platform=collector_for, commands=[])
        else:
            payload.update(module_type="interaction", core=core, commands=commands or [])
        payload.update(fields)
        answer = self.post("/api/modules/register", payload)
        if answer.status_code not in (200, 201):
            raise AssertionError(f"registration of {name} refused: {answer.text}")
        return answer.json()

    def __enter__(self) -> FleetProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
