"""``waddlebot.observability``: redacted JSON logs, metrics export, health answers."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from waddlebot.observability import JsonFormatter, Metrics, health_report, redact

# -- redaction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to postgresql://waddle:s3cret-pw@db:5432/waddlebot", "s3cret-pw"),
        ("redis://default:redis-pw@cache:6379/0", "redis-pw"),
        ("redis://:only-a-password@cache:6379/0", "only-a-password"),
        ("GET /api/x?token=abc123&page=2", "abc123"),
        ("callback?access_token=tok-987", "tok-987"),
        ("X-API-Key: key-456", "key-456"),
        ("x-api-key=key-789", "key-789"),
        ("headers={'X-API-Key': 'key-in-dict'}", "key-in-dict"),
        ('{"api_key": "key-in-json", "n": 1}', "key-in-json"),
        ('{"password":"pw-json"}', "pw-json"),
        ("client_secret=cs-1", "cs-1"),
        ("Authorization: Bearer bearer-tok-1", "bearer-tok-1"),
        ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("X-Broker-Key: broker-key-1", "broker-key-1"),
    ],
)
def test_redact_removes_credentials(text, secret):
    redacted = redact(text)
    assert secret not in redacted
    assert "***" in redacted


def test_redact_keeps_the_useful_part():
    assert (
        redact("postgresql://waddle:pw@db:5432/waddlebot")
        == "postgresql://waddle:***@db:5432/waddlebot"
    )
    assert redact("GET /api/x?token=abc&page=2") == "GET /api/x?token=***&page=2"
    assert redact("X-API-Key: abc") == "X-API-Key: ***"
    assert redact("nothing secret here: page=2") == "nothing secret here: page=2"
    assert redact("http://router:8000/api/router/events") == "http://router:8000/api/router/events"


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(
        "waddlebot.test", logging.WARNING, __file__, 1, message, args, exc_info
    )


def test_json_formatter_redacts_message_and_exception():
    try:
        raise RuntimeError("cannot connect to redis://user:exc-pw@cache:6379")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record("calling %s with token=%s", "http://x", "tok-1", exc_info=exc_info)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "WARNING" and entry["logger"] == "waddlebot.test"
    assert entry["message"] == "calling http://x with token=***"
    assert "RuntimeError" in entry["exception"]
    assert "exc-pw" not in line and "tok-1" not in line
    assert isinstance(entry["ts"], float)


# -- metrics --------------------------------------------------------------------------


@pytest.fixture
def metrics() -> Metrics:
    metrics = Metrics("unit")
    events = metrics.counter("events_total", "Events processed", ("status",))
    events.labels(status="ok").inc(3)
    events.labels(status="error").inc()
    metrics.counter("plain_total", "No labels").inc()
    metrics.gauge("queue_depth", "Items waiting").set(7)
    latency = metrics.histogram("event_seconds", "Latency")
    latency.observe(0.02)
    latency.observe(0.2)
    return metrics


def test_prometheus_text_has_the_counters(metrics):
    text = metrics.prometheus().decode()
    assert "# HELP unit_events_total Events processed" in text
    assert "# TYPE unit_events_total counter" in text
    assert 'unit_events_total{status="ok"} 3.0' in text
    assert 'unit_events_total{status="error"} 1.0' in text
    assert "unit_plain_total 1.0" in text
    assert "unit_queue_depth 7.0" in text
    assert "unit_event_seconds_count 2.0" in text
    assert 'unit_event_seconds_bucket{le="0.025"} 1.0' in text


def test_json_snapshot(metrics):
    snapshot = metrics.snapshot()
    json.dumps(snapshot)  # JSON-ready
    values = snapshot["metrics"]
    assert values["unit_events_total{status=ok}"] == 3.0
    assert values["unit_events_total{status=error}"] == 1.0
    assert values["unit_plain_total"] == 1.0
    assert values["unit_queue_depth"] == 7.0
    assert values["unit_event_seconds_count"] == 2.0
    assert values["unit_event_seconds_sum"] == pytest.approx(0.22)
    assert not any(k.endswith(("_created", "_bucket")) or "_bucket{" in k for k in values)
    assert snapshot["uptime_s"] >= 0


def test_registries_are_separate_per_app():
    first, second = Metrics("app"), Metrics("app")
    first.counter("x_total", "x").inc()
    second.counter("x_total", "x")  # same name in another app's registry is fine
    assert first.snapshot()["metrics"]["app_x_total"] == 1.0
    assert second.snapshot()["metrics"]["app_x_total"] == 0.0


# -- health ---------------------------------------------------------------------------


class _Database:
    def __init__(self, primary="ok", replica="ok"):
        self.answer = {
            "primary": {"status": primary},
            "replica": {"status": replica},
            "replica_fallbacks": 0,
        }

    def health(self):
        return self.answer


class _Store:
    backend = "memory"

    def __init__(self, up=True):
        self.up = up

    def ping(self):
        return self.up


def test_health_all_ok():
    status, body = health_report(
        app="router_module",
        version="1.2.3",
        database=_Database(),
        store=_Store(),
        extra={"queue": 0},
    )
    assert status == 200
    assert body["status"] == "ok" and body["app"] == "router_module" and body["version"] == "1.2.3"
    assert body["database"]["primary"]["status"] == "ok"
    assert body["store"] == {"backend": "memory", "status": "ok"}
    assert body["queue"] == 0


def test_health_primary_down_is_503():
    status, body = health_report(app="a", version="1", database=_Database(primary="down"))
    assert status == 503 and body["status"] == "down"


def test_health_replica_down_is_degraded_not_failed():
    status, body = health_report(app="a", version="1", database=_Database(replica="down"))
    assert status == 200 and body["status"] == "degraded"
    status, body = health_report(app="a", version="1", database=_Database(replica="not_configured"))
    assert status == 200 and body["status"] == "ok"


def test_health_store_down_is_degraded():
    status, body = health_report(app="a", version="1", database=_Database(), store=_Store(False))
    assert status == 200 and body["status"] == "degraded"
    assert body["store"]["status"] == "down"


def test_health_primary_and_store_down_stays_down():
    status, body = health_report(
        app="a", version="1", database=_Database(primary="down"), store=_Store(False)
    )
    assert status == 503 and body["status"] == "down"


def test_health_without_dependencies():
    assert health_report(app="a", version="1") == (
        200,
        {"app": "a", "version": "1", "status": "ok"},
    )
