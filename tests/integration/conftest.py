"""Fixtures of the router integration tests: the router as a real process, and its stubs.

Two fleets are started once per test session:

* ``pg_router`` — ``waddlebot up --apps router_module`` on the real PostgreSQL primary
  (+ streaming replica) and Redis, with the Lambda and OpenWhisk stubs as its engines.
  It uses a database of its own on the test cluster (created for the session, reset
  with ``reset_postgres`` and dropped afterwards), because other suites reset the
  shared ``waddlebot_test`` database while they run; the replica streams it like any
  other database of the cluster;
* ``embedded_router`` — the same app on the embedded default (SQLite, in-process store).

Each fleet gets a console (and twitch) collector registered that points at a
:class:`StubServer`, so every chat reply the router pushes can be asserted. Tests use
unique channel, command and module names, so they never see each other's data.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import pytest

from waddlebot.testkit import (
    TEST_REDIS_HOST,
    TEST_REPLICA_URL,
    FleetProcess,
    StubServer,
    chat_event,
    clear_store_prefix,
    create_database,
    database_url,
    drop_database,
    lambda_stub,
    openwhisk_stub,
    reset_postgres,
    wait_for_replica,
)

#: seconds the router caches its command catalogue and per-entity permissions
COMMAND_CACHE_TTL = 0.5
OPENWHISK_AUTH = "user:pass"
OPENWHISK_NAMESPACE = "waddlebot"
COLLECTOR_PLATFORMS = ("console", "twitch")


#: this session's own database on the test primary, and the same on the replica
ROUTER_DATABASE = f"waddlebot_router_{uuid.uuid4().hex[:8]}"
PRIMARY_URL = database_url(ROUTER_DATABASE)
REPLICA_URL = database_url(ROUTER_DATABASE, TEST_REPLICA_URL)


def _create_database() -> None:
    """Create this session's database and wait until the replica serves it."""
    create_database(ROUTER_DATABASE)
    reset_postgres(PRIMARY_URL)
    deadline = time.monotonic() + 30  # other suites may be restarting the replica
    while True:
        try:
            psycopg2.connect(REPLICA_URL).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def unique(prefix: str = "t") -> str:
    """A short name nobody else in this session uses (valid command/channel chars)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclasses.dataclass
class Router:
    """One running router fleet with its collector stub and test helpers."""

    kind: str  # "postgres" | "embedded"
    fleet: FleetProcess
    collector: StubServer

    @property
    def url(self) -> str:
        return self.fleet.url

    @property
    def headers(self) -> dict:
        return self.fleet.headers

    @property
    def api_key(self) -> str:
        return self.fleet.api_key

    @property
    def on_postgres(self) -> bool:
        return self.kind == "postgres"

    # -- HTTP ----------------------------------------------------------------------------
    def get(self, path: str, **kwargs):
        return self.fleet.get(path, **kwargs)

    def post(self, path: str, json=None, **kwargs):
        return self.fleet.post(path, json=json, **kwargs)

    def send(self, event: dict) -> dict:
        """POST one event; assert 200 and return the answer."""
        answer = self.post("/api/router/events", event)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def chat(self, text: str, channel: str, **kwargs) -> dict:
        """Send a chat message in ``console:<channel>:<channel>``."""
        return self.send(chat_event(text, channel=channel, **kwargs))

    def sync(self) -> None:
        """Let the read replica catch up with what the primary has written.

        Other suites on the shared cluster may stop the replica for a while; the router
        then reads from the primary, so there is nothing to wait for.
        """
        if not self.on_postgres:
            return
        try:
            wait_for_replica(PRIMARY_URL, REPLICA_URL)
        except psycopg2.OperationalError:
            pass

    def register(self, payload: dict, *, expect: tuple[int, ...] = (200, 201)) -> dict:
        """POST /api/modules/register; the catalogue is read from the replica, so sync."""
        answer = self.post("/api/modules/register", payload)
        assert answer.status_code in expect, answer.text
        self.sync()
        return answer.json()

    def register_module(
        self,
        name: str,
        endpoint: str | None,
        commands: list[dict],
        *,
        core: bool = True,
        **extra,
    ) -> dict:
        """Register an interaction module with these commands (DESIGN §5 payload)."""
        payload = {
            "module_name": name,
            "module_version": "1.0.0",
            "module_type": "interaction",
            "platform": None,
            "endpoint_url": endpoint,
            "core": core,
            "commands": commands,
            **extra,
        }
        return self.register(payload)

    def command_id(self, module: str, command: str) -> int:
        """The id of a registered command (through GET /api/router/commands)."""
        self.sync()
        answer = self.get("/api/router/commands", params={"module": module, "per_page": 500})
        assert answer.status_code == 200, answer.text
        for item in answer.json()["items"]:
            if item["command"] == command:
                return item["id"]
        raise AssertionError(f"command {command} of {module} not listed: {answer.text}")

    # -- replies pushed to the collector ---------------------------------------------------
    def replies(self, entity_id: str, count: int = 1, *, timeout: float = 5.0) -> list[dict]:
        """Wait for ``count`` chat replies pushed to the collector for ``entity_id``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.replies_now(entity_id)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} replies for {entity_id}, got {len(found)}: {found}"
                )
            time.sleep(0.02)

    def replies_now(self, entity_id: str) -> list[dict]:
        """Chat replies received so far for ``entity_id`` (JSON bodies)."""
        return [
            r.json
            for r in self.collector.received("POST", r"/api/[a-z]+/responses")
            if isinstance(r.json, dict) and r.json.get("entity_id") == entity_id
        ]

    def reply_requests(self, entity_id: str) -> list:
        """The raw recorded pushes for ``entity_id`` (headers included)."""
        return [
            r
            for r in self.collector.received("POST", r"/api/[a-z]+/responses")
            if isinstance(r.json, dict) and r.json.get("entity_id") == entity_id
        ]


def _collector_stub() -> StubServer:
    stub = StubServer()
    stub.route("POST", r"/api/(?P<platform>[a-z]+)/responses", {"ok": True})
    stub.route("GET", r"/api/[a-z]+/health", {"status": "ok"})
    return stub


def _register_collectors(fleet: FleetProcess, collector: StubServer, tag: str) -> None:
    for platform in COLLECTOR_PLATFORMS:
        fleet.register(
            f"{platform}-collector-{tag}",
            collector.url,
            collector_for=platform,
            health_check_url=f"{collector.url}/api/{platform}/health",
        )


# -- engine stubs shared by the session (tests add their functions/actions) -----------------
@pytest.fixture(scope="session")
def lambda_functions() -> dict[str, Callable[[dict], object]]:
    """Functions the Lambda stub runs, keyed by full function name; tests add to it."""
    return {}


@pytest.fixture(scope="session")
def lambda_server(lambda_functions) -> Iterator[StubServer]:
    stub = lambda_stub(lambda_functions)
    yield stub
    stub.close()


@pytest.fixture(scope="session")
def openwhisk_actions() -> dict[str, Callable[[dict], object]]:
    """Actions the OpenWhisk stub runs, keyed by action name; tests add to it."""
    return {}


@pytest.fixture(scope="session")
def openwhisk_server(openwhisk_actions) -> Iterator[StubServer]:
    stub = openwhisk_stub(openwhisk_actions, namespace=OPENWHISK_NAMESPACE, auth_key=OPENWHISK_AUTH)
    yield stub
    stub.close()


def _engine_env(lambda_server: StubServer, openwhisk_server: StubServer) -> dict:
    return {
        "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "OPENWHISK_API_HOST": openwhisk_server.url,
        "OPENWHISK_AUTH_KEY": OPENWHISK_AUTH,
        "OPENWHISK_NAMESPACE": OPENWHISK_NAMESPACE,
        "ROUTER_DEFAULT_RATE_LIMIT": "1000",
        "ROUTER_COMMAND_CACHE_TTL": str(COMMAND_CACHE_TTL),
    }


def _stop(fleet: FleetProcess, request: pytest.FixtureRequest) -> None:
    failed = getattr(request.session, "testsfailed", 0)
    fleet.stop()
    if failed:
        print(f"\n--- {fleet.url} log (last 4000 chars) ---\n{fleet.logs()[-4000:]}")


# -- the fleets -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_router(request, tmp_path_factory, lambda_server, openwhisk_server) -> Iterator[Router]:
    """The router on PostgreSQL primary + replica and Redis, started once per session."""
    _create_database()
    prefix = f"wbtest:{uuid.uuid4().hex[:12]}:"
    env = {
        "DATABASE_URL": PRIMARY_URL,
        "READ_REPLICA_URL": REPLICA_URL,
        "REDIS_HOST": TEST_REDIS_HOST,
        "WADDLEBOT_STORE_PREFIX": prefix,
        **_engine_env(lambda_server, openwhisk_server),
    }
    # served as deployed: gunicorn with the router's worker class (k8s router-config:
    # gevent); WADDLEBOT_TEST_ROUTER_WORKER_CLASS=gthread runs them on threads
    fleet = FleetProcess(
        ["router_module"],
        env=env,
        data_dir=tmp_path_factory.mktemp("router-pg"),
        server="gunicorn",
        worker_class=os.environ.get("WADDLEBOT_TEST_ROUTER_WORKER_CLASS", "gevent"),
    )
    collector = _collector_stub()
    try:
        fleet.start()
        _register_collectors(fleet, collector, "pg")
        router = Router("postgres", fleet, collector)
        router.sync()
        yield router
    finally:
        _stop(fleet, request)
        collector.close()
        drop_database(ROUTER_DATABASE)
        clear_store_prefix(prefix)


@pytest.fixture(scope="session")
def embedded_router(request, tmp_path_factory, lambda_server, openwhisk_server) -> Iterator[Router]:
    """The router on its embedded default: SQLite and the in-process store."""
    fleet = FleetProcess(
        ["router_module"],
        env=_engine_env(lambda_server, openwhisk_server),
        data_dir=tmp_path_factory.mktemp("router-embedded"),
    )
    collector = _collector_stub()
    try:
        fleet.start()
        _register_collectors(fleet, collector, "embedded")
        yield Router("embedded", fleet, collector)
    finally:
        _stop(fleet, request)
        collector.close()


@pytest.fixture(params=["postgres", "embedded"])
def any_router(request) -> Router:
    """Each fleet in turn, for the core behaviour that must hold on both."""
    name = "pg_router" if request.param == "postgres" else "embedded_router"
    return request.getfixturevalue(name)


# -- per-test helpers -----------------------------------------------------------------------
@pytest.fixture
def stubs() -> Iterator[Callable[[], StubServer]]:
    """A factory of module stubs, all closed after the test."""
    made: list[StubServer] = []

    def make() -> StubServer:
        stub = StubServer()
        made.append(stub)
        return stub

    yield make
    # StubServer.close() waits for the serve loop's 0.5 s poll; nothing depends on it
    for stub in made:
        threading.Thread(target=stub.close, daemon=True).start()


@pytest.fixture
def pg() -> Iterator[Callable]:
    """Run SQL on the router's PostgreSQL primary: ``pg(sql, params)`` → rows (autocommit)."""
    connection = psycopg2.connect(PRIMARY_URL)
    connection.autocommit = True

    def run(sql: str, params: tuple = ()) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    yield run
    connection.close()


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses."""
    return unique("chan")


@pytest.fixture
def uniq() -> Callable[[str], str]:
    """``uniq("cmd")`` → a command/module/user name no other test uses."""
    return unique
