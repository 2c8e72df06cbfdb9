"""Logs, metrics and health, the same in every app.

* JSON log lines on stderr with secrets redacted (passwords in URLs, ``token=…``,
  ``X-API-Key: …``), so a log never leaks a credential.
* :class:`Metrics`: one prometheus-client registry per app, exported as JSON or in the
  Prometheus text format.
* :func:`health_report`: database primary/replica and store status in one answer.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECRET_PAIR = re.compile(
    r"(?i)((?:password|passwd|secret|token|api[_-]?key|broker[_-]?key|authorization|client_secret)"
    r"[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)([^\"'\s,&}]+)"
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")


def redact(text: str) -> str:
    """Remove anything that looks like a credential from a log message."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _SECRET_PAIR.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (redacted), exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Install the JSON formatter on the root logger once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level)


class Metrics:
    """Counters, gauges and histograms of one app, exportable as JSON or Prometheus text."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self.started = time.time()

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        """A monotonically increasing count."""
        return Counter(name, doc, labels, namespace=self.namespace, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A value that goes up and down."""
        return Gauge(name, doc, labels, namespace=self.namespace, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    ) -> Histogram:
        """A latency distribution in seconds."""
        return Histogram(
            name, doc, labels, namespace=self.namespace, registry=self.registry, buckets=buckets
        )

    def prometheus(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """Every sample as ``{"name{label=value}": number}`` plus uptime."""
        samples: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created") or sample.name.endswith("_bucket"):
                    continue
                key = sample.name
                if sample.labels:
                    inner = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    key = f"{key}{{{inner}}}"
                samples[key] = sample.value
        return {"uptime_s": round(time.time() - self.started, 1), "metrics": samples}


def health_report(
    *, app: str, version: str, database=None, store=None, extra: dict | None = None
) -> tuple[int, dict]:
    """(HTTP status, body): 200 when primary and store answer, 503 when the primary is down."""
    body: dict = {"app": app, "version": version, "status": "ok"}
    status = 200
    if database is not None:
        db_status = database.health()
        body["database"] = db_status
        if db_status["primary"]["status"] != "ok":
            body["status"], status = "down", 503
        elif db_status["replica"]["status"] == "down":
            body["status"] = "degraded"
    if store is not None:
        reachable = store.ping()
        body["store"] = {"backend": store.backend, "status": "ok" if reachable else "down"}
        if not reachable and status == 200:
            body["status"] = "degraded"
    if extra:
        body.update(extra)
    return status, body
