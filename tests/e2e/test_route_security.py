"""Every route of every app refuses a caller without a valid service key (DESIGN §6).

The whole fleet runs with ``waddlebot up`` (embedded SQLite, in-process store). The
routes come from py4web itself: a separate process loads every app the way the fleet
does and prints ``py4web.core.Reloader.ROUTES``, so a route added tomorrow is walked
tomorrow without touching this test. Only the public allow-list (health checks,
platform webhooks, portal login pages, overlays) may answer without a key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import requests

from waddlebot.serve import API_PREFIXES, APPS
from waddlebot.testkit import FleetProcess

pytestmark = pytest.mark.e2e

HEALTH_PATHS = {f"{prefix}/health" for prefix in API_PREFIXES.values()}
#: each app's generated API description (libs/waddlebot/openapi.py) is served without a
#: key, like health; DESIGN does not decide this, so it is allowed here explicitly (drop
#: this line to require the service key for it)
DOC_PATHS = {f"{prefix}/openapi.json" for prefix in API_PREFIXES.values()}

#: paths that may answer without a service key (DESIGN §3 and §6)
PUBLIC_PATTERNS = (
    re.compile(r"/webhooks/.*"),  # platform signature instead of a key
    re.compile(r"/portal_module/auth(/.*)?"),  # py4web Auth: login pages and API
    re.compile(r"/portal(/.*)?"),  # portal pages: portal login (session), not a key
    re.compile(r"/overlay(/.*)?"),  # OBS overlays: unguessable per-entity key in the URL
)

_ROUTES_SCRIPT = r"""
import json, sys
from waddlebot.migrate import migrate_all
from waddlebot.serve import APPS, load_apps

migrate_all()
load_apps(APPS)
from py4web.core import Reloader

routes = [
    {"app": app, "rule": item["rule"], "method": item["method"]}
    for app, items in Reloader.ROUTES.items()
    for item in items
]
sys.stdout.write("\nROUTES=" + json.dumps(routes) + "\n")
"""

_SCRUBBED_PREFIXES = ("DATABASE_URL", "READ_REPLICA_URL", "REDIS_", "WADDLEBOT_", "PY4WEB_")

_PLACEHOLDER = re.compile(r"<([^>]*)>")


def is_public(path: str) -> bool:
    """Whether a concrete path is on the public allow-list."""
    if path in HEALTH_PATHS or path in DOC_PATHS:
        return True
    return any(p.fullmatch(path) for p in PUBLIC_PATTERNS)


def concrete(rule: str) -> str:
    """The rule with ``<name>``, ``<name:int>``, ``<name:path>`` … filled with dummy values."""

    def fill(match: re.Match) -> str:
        spec = match.group(1)
        return "1" if re.search(r"[:.](int|float)\b", spec) else "x"

    return _PLACEHOLDER.sub(fill, rule)


def test_helpers():
    assert concrete("/api/router/responses/<execution_id>") == "/api/router/responses/x"
    assert concrete("/api/x/<id:int>/y/<p:path>") == "/api/x/1/y/x"
    assert is_public("/api/router/health") and is_public("/api/broker/v1/health")
    assert is_public("/webhooks/twitch") and is_public("/overlay/abc/events")
    assert is_public("/portal") and is_public("/portal_module/auth/login")
    assert not is_public("/api/router/metrics")
    assert not is_public("/api/portal/overlays")
    assert not is_public("/api/router/x/health")
    assert is_public("/api/router/openapi.json") and not is_public("/api/router/openapi")
    assert not is_public("/portalx") and not is_public("/portal_module/index")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def routes_loader(tmp_path_factory):
    """Start loading every app in a separate process (it runs while the fleet starts)."""
    tmp = tmp_path_factory.mktemp("routes")
    process = subprocess.Popen(
        [sys.executable, "-c", _ROUTES_SCRIPT],
        env=_clean_env(WADDLEBOT_API_KEYS="route-walk-key", WADDLEBOT_DATA_DIR=str(tmp / "data")),
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, routes_loader):
    fleet = FleetProcess(data_dir=tmp_path_factory.mktemp("fleet"), api_key="the-right-key")
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def routes(routes_loader) -> list[dict]:
    stdout, stderr = routes_loader.communicate(timeout=60)
    assert routes_loader.returncode == 0, f"loading the apps failed:\n{stderr[-3000:]}"
    line = next((ln for ln in stdout.splitlines() if ln.startswith("ROUTES=")), None)
    assert line, f"no route list printed:\n{stdout[-2000:]}\n{stderr[-2000:]}"
    found = json.loads(line[len("ROUTES=") :])
    apps = {r["app"] for r in found}
    assert apps == set(APPS), f"apps without routes: {set(APPS) - apps}"
    return found


def _walkable(routes: list[dict]) -> list[tuple[str, str, str]]:
    """(app, method, concrete path) of every non-static route, deduplicated."""
    seen = {}
    for route in routes:
        if "/static/" in route["rule"]:
            continue
        methods = route["method"] if isinstance(route["method"], list) else [route["method"]]
        for method in methods:
            method = method.upper()
            if method in ("*", "ANY"):
                method = "GET"
            key = (method, concrete(route["rule"]))
            seen.setdefault(key, (route["app"], *key))
    return sorted(seen.values())


def _call(
    session: requests.Session,
    fleet: FleetProcess,
    method: str,
    path: str,
    headers,
    *,
    whole_body: bool = False,
):
    """(status, body); the body is read only when asked or on a 5xx (streams stay unread)."""
    kwargs = {"headers": headers, "timeout": 10, "allow_redirects": False, "stream": True}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        kwargs["json"] = {}
    answer = session.request(method, fleet.url + path, **kwargs)
    try:
        if whole_body:
            head = answer.content
        elif answer.status_code >= 500:
            head = answer.raw.read(4096, decode_content=True)
        else:
            head = b""
    finally:
        answer.close()
    return answer.status_code, head.decode(errors="replace")


def test_every_protected_route_needs_a_valid_key(fleet, routes):
    walk = _walkable(routes)
    protected = [(app, method, path) for app, method, path in walk if not is_public(path)]
    assert len(walk) > 20, walk
    assert len(protected) > 20, f"only {len(protected)} protected routes walked: {protected}"

    wrong = {"X-API-Key": "not-the-key", "X-Broker-Key": "not-the-key"}
    failures = []
    with requests.Session() as session:
        for app, method, path in protected:
            for label, headers in (("no key", {}), ("wrong key", wrong)):
                status, body = _call(session, fleet, method, path, headers)
                if status not in (401, 403):
                    failures.append(f"{app} {method} {path} with {label}: {status} {body[:200]}")
    assert not failures, "routes open without a valid key:\n" + "\n".join(failures)


def test_public_routes_do_not_crash_without_a_key(fleet, routes):
    public = [(app, method, path) for app, method, path in _walkable(routes) if is_public(path)]
    assert {path for _, _, path in public} >= HEALTH_PATHS
    failures = []
    with requests.Session() as session:
        for app, method, path in public:
            plain = method == "GET" and path in HEALTH_PATHS | DOC_PATHS
            status, body = _call(session, fleet, method, path, {}, whole_body=plain)
            if fleet.api_key in body:
                failures.append(f"{app} {method} {path}: shows the service key")
            # a JSON 503 ("TWITCH_APP_ID is not configured") is a clean answer; a 500, an
            # HTML error page or a stack trace is a crash
            if (
                status == 500
                or (status > 500 and not _is_json_error(body))
                or ("Traceback (most recent call last)" in body)
            ):
                failures.append(f"{app} {method} {path}: {status} {body[:300]}")
    assert not failures, "public routes crashing on anonymous calls:\n" + "\n".join(failures)


def _is_json_error(body: str) -> bool:
    try:
        return "error" in json.loads(body)
    except (ValueError, TypeError):
        return False


def test_the_right_key_is_accepted(fleet):
    """The 401/403 above are real refusals: the same fleet lets the right key in."""
    for app in APPS:
        answer = fleet.get(f"{API_PREFIXES[app]}/metrics")
        assert answer.status_code == 200, (app, answer.status_code, answer.text[:300])
        assert "metrics" in answer.json(), app


def test_every_app_is_healthy(fleet):
    for app in APPS:
        answer = requests.get(f"{fleet.url}{API_PREFIXES[app]}/health", timeout=10)
        assert answer.status_code == 200, (app, answer.text[:500])
        body = answer.json()
        assert body["database"]["primary"]["status"] == "ok", (app, body)
        assert body["store"]["status"] == "ok", (app, body)
        assert body["store"]["backend"] == "memory", (app, body)
