"""The router while its Redis is away, as deployed (gunicorn, gevent worker).

Events get a 503 with ``Retry-After`` and nothing of them is kept; health says
``degraded``; when Redis is back (a restart: every connection the router kept is
gone) the router serves again by itself, and the event a collector retries goes
through once.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from waddlebot.testkit import FleetProcess, StubServer, chat_event, free_port

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server of this test's own on a free port, to stop and start at will."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def router_and_redis(tmp_path):
    store = PrivateRedis()
    store.start()
    collector = StubServer()
    collector.route("POST", r"/api/console/responses", {"ok": True})
    module = StubServer()
    module.route("POST", r"/run", {"response_action": "chat", "chat_message": "pong"})
    fleet = FleetProcess(
        ["router_module"],
        env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(store.port)},
        data_dir=tmp_path,
        server="gunicorn",
        worker_class="gevent",
    )
    fleet.start()
    try:
        fleet.register("console-outage", collector.url, collector_for="console")
        fleet.register("outage-module", module.url, [{"command": "ping", "location_url": "/run"}])
        yield fleet, store, module
    finally:
        fleet.stop()
        store.stop()
        module.close()
        collector.close()


def test_events_wait_out_a_redis_restart_with_503s_and_recover_by_themselves(
    router_and_redis,
):
    fleet, store, module = router_and_redis
    before = fleet.post("/api/router/events", chat_event("!ping", channel="outage"))
    assert before.status_code == 200, before.text
    assert before.json()["executions"][0]["status"] == "success"

    store.stop()
    retried = chat_event("!ping", channel="outage")
    refused = fleet.post("/api/router/events", retried)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert refused.json()["error"]["code"] == "service_unavailable"
    health = fleet.get("/api/router/health").json()
    assert health["status"] == "degraded" and health["store"]["status"] == "down"
    assert len(module.received()) == 1  # nothing of the refused event ran

    store.start()  # a new server: every connection the router kept is closed
    again = fleet.post("/api/router/events", retried)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "processed"
    assert again.json()["executions"][0]["status"] == "success"
    assert fleet.post("/api/router/events", retried).json()["status"] == "duplicate"
    assert fleet.get("/api/router/health").json()["store"]["status"] == "ok"
    assert len(module.received()) == 2
