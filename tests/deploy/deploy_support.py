"""Facts and helpers shared by the deployment checks (Dockerfiles, compose, Kong, k8s).

A plain module, not ``conftest``, so the test modules can import it by a name no other test
folder uses. Everything runs offline: no Docker daemon, no Kong, no cluster. The external
validators (deck, docker-compose, kubectl, kubernetes-validate, check-jsonschema) come from
``scripts/deploy-tools.sh``; a missing one fails the test that needs it, never skips it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")


@dataclass(frozen=True)
class App:
    """One app of the fleet as the deployment files must name it (DESIGN §2, §3)."""

    folder: str  # the py4web app folder
    service: str  # compose service = Kubernetes Service/Deployment = Kong upstream host
    health: str  # open health path
    prefixes: tuple[str, ...]  # every public path prefix it serves (DESIGN §3)

    @property
    def kong_service(self) -> str:
        return f"{self.service}-service"


FLEET = (
    App(
        "router_module",
        "router",
        "/api/router/health",
        (
            "/api/router",
            "/api/modules",
            "/api/servers",
            "/api/context",
            "/api/reputation",
            "/api/events",
            "/api/gateway",
        ),
    ),
    App("marketplace_module", "marketplace", "/api/marketplace/health", ("/api/marketplace",)),
    App(
        "portal_module",
        "portal",
        "/api/portal/health",
        ("/api/portal", "/portal", "/overlay", "/portal_module"),
    ),
    App("labels_core_module", "labels", "/api/labels/health", ("/api/labels",)),
    App("kong_admin_broker", "kong-admin-broker", "/api/broker/v1/health", ("/api/broker/v1",)),
    App(
        "twitch_module",
        "twitch-collector",
        "/api/twitch/health",
        ("/api/twitch", "/webhooks/twitch"),
    ),
    App(
        "discord_module",
        "discord-collector",
        "/api/discord/health",
        ("/api/discord", "/webhooks/discord"),
    ),
    App("slack_module", "slack-collector", "/api/slack/health", ("/api/slack", "/webhooks/slack")),
    App("ai_interaction_module", "ai-interaction", "/api/ai/v1/health", ("/api/ai/v1",)),
    App("alias_interaction_module", "alias", "/api/alias/health", ("/api/alias",)),
    App("shoutout_interaction_module", "shoutout", "/api/shoutout/health", ("/api/shoutout",)),
)
BY_SERVICE = {app.service: app for app in FLEET}
BY_FOLDER = {app.folder: app for app in FLEET}

#: prefixes reached without an API key: platform webhooks, portal pages, overlays (DESIGN §3)
OPEN_PREFIXES = (
    "/webhooks/twitch",
    "/webhooks/discord",
    "/webhooks/slack",
    "/portal",
    "/portal_module",
    "/overlay",
)

#: Kong ACL consumer groups (DESIGN §6)
CONSUMER_GROUPS = {"collectors", "admins", "services", "api-users", "super-admins"}


def tool(name: str) -> str:
    """The path of an external validator; the test fails (not skips) when it is missing."""
    venv_bin = Path(sys.executable).parent / name
    found = str(venv_bin) if venv_bin.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `bash scripts/deploy-tools.sh`", pytrace=False)
    return found


def run(args: list[str], *, env: dict | None = None, cwd: Path = ROOT, timeout: float = 120):
    """Run a validator; return the CompletedProcess (text output, never raises on exit code)."""
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment, so a developer's own variables cannot change a result."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(extra)
    return env


#: libyaml's loader and dumper when PyYAML has them (several times faster on rendered output)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_LOADER)


def parse_yaml_all(text: str) -> list:
    """The non-empty documents of a multi-document YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


def dump_yaml(doc) -> str:
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False)


def load_yaml(path: Path):
    return parse_yaml(path.read_text(encoding="utf-8"))


# -- what the tests read; each computed once per test run -------------------------------------
# (plain cached functions rather than fixtures in a conftest.py: other test folders import
# names from their own `conftest` module, which a second conftest.py could shadow)


@functools.cache
def kong_file() -> dict:
    """kong/kong.yml."""
    return load_yaml(ROOT / "kong" / "kong.yml")


@functools.cache
def compose_source() -> dict:
    """docker-compose.yml as written (anchors and merge keys resolved by the YAML loader)."""
    return load_yaml(ROOT / "docker-compose.yml")


@functools.cache
def compose_resolved() -> dict:
    """`docker-compose config` with the variables of .env.example: what compose would run."""
    result = run(
        [
            tool("docker-compose"),
            "--env-file",
            str(ROOT / ".env.example"),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
        ],
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    return parse_yaml(result.stdout)


@functools.cache
def rendered_overlays() -> dict[str, list[dict]]:
    """`kubectl kustomize k8s/overlays/<name>` of each overlay, as a list of documents."""
    kubectl = tool("kubectl")
    out = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)])
        assert result.returncode == 0, f"kustomize {overlay}: {result.stderr}"
        out[overlay] = parse_yaml_all(result.stdout)
    return out
