"""The plumbing every app's ``common.py`` builds the same way.

:class:`AppServices` turns an app's frozen settings into its fixtures: the
:class:`~waddlebot.db.Database` (primary + replica), the store, the service-key
fixture, the metrics registry, and the open ``/api/<app>/health`` plus the keyed
``/api/<app>/metrics`` endpoints. One process that serves several apps shares one
database object and one store per configuration, so the embedded SQLite file is
not opened eleven times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from py4web.core import action, request, response

from . import store as store_module
from .auth import KongConsumer, ServiceKey
from .db import Database, TableDefiner
from .observability import Metrics, configure_logging, health_report
from .openapi import build_document
from .settings import CommonSettings
from .web import ENDPOINTS, ServiceUnavailable, register_error_translator

_shared_lock = threading.Lock()
_shared_databases: dict[tuple, Database] = {}
_shared_stores: dict[tuple, store_module.Store] = {}


def _store_unavailable(exc: Exception):
    if isinstance(exc, store_module.StoreUnavailable):
        return ServiceUnavailable(f"session store unavailable: {exc}", retry_after=5)
    return None


def _database_unavailable(exc: Exception):
    name = type(exc).__name__
    if name in ("OperationalError", "InterfaceError") and "connect" in str(exc).lower():
        return ServiceUnavailable("database unavailable, retry shortly", retry_after=5)
    return None


register_error_translator(_store_unavailable)
register_error_translator(_database_unavailable)


def shared_database(settings: CommonSettings, definers: Iterable[TableDefiner]) -> Database:
    """The process-wide Database for these URLs, with this app's tables added."""
    key = (settings.database_url.reveal(), settings.read_replica_url.reveal())
    definers = list(definers)
    with _shared_lock:
        database = _shared_databases.get(key)
        if database is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            database = Database(
                key[0],
                key[1] or None,
                definers=definers,
                pool_size=settings.db_pool_size,
                migrate=settings.migrate,
                folder=str(settings.data_dir),
            )
            _shared_databases[key] = database
            return database
    for define in definers:
        database.add_tables(define)
    return database


def shared_store(settings: CommonSettings) -> store_module.Store:
    """The process-wide store (Redis, or in-process when ``REDIS_HOST`` is unset)."""
    key = (settings.redis_host, settings.redis_port, settings.redis_db, settings.store_prefix)
    with _shared_lock:
        existing = _shared_stores.get(key)
        if existing is None:
            existing = store_module.make_store(
                redis_host=settings.redis_host,
                redis_port=settings.redis_port,
                redis_password=settings.redis_password.reveal() or None,
                redis_db=settings.redis_db,
                key_prefix=settings.store_prefix,
            )
            _shared_stores[key] = existing
        return existing


class AppServices:
    """Fixtures and standard endpoints of one app, built from its settings."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        short_name: str,
        api_prefix: str,
        definers: Iterable[TableDefiner] = (),
        use_store: bool = True,
    ):
        configure_logging(settings.log_level)
        self.settings = settings
        self.short_name = short_name
        self.api_prefix = api_prefix.rstrip("/")
        self.database = shared_database(settings, definers)
        self.db = self.database.primary
        self.store = shared_store(settings) if use_store else None
        self.service_key = ServiceKey(settings.api_keys)
        self.consumer = KongConsumer()
        self.metrics = Metrics(short_name.replace("-", "_"))
        #: callables returning dicts merged into the JSON metrics answer
        self.metrics_extras: list = []
        self._register_standard_endpoints()

    def _register_standard_endpoints(self) -> None:
        services = self
        app_name = action.app_name

        @action(f"{self.api_prefix}/openapi.json", method=["GET"])
        def openapi():
            """The app's OpenAPI 3.1 document, generated from its registered routes."""
            return build_document(
                app_name,
                title=f"WaddleBot {services.short_name} API",
                version=services.settings.module_version,
                server_url=services.settings.public_base_url,
            )

        for path, summary, keyed in (
            (f"{self.api_prefix}/health", "Health: database primary/replica and store", False),
            (f"{self.api_prefix}/metrics", "Metrics as JSON or Prometheus text", True),
        ):
            ENDPOINTS[(app_name, path, "GET")] = {
                "summary": summary,
                "keyed": keyed,
                "request_schema": None,
                "status": 200,
                "operation_id": f"{self.short_name}_{path.rsplit('/', 1)[-1]}",
            }

        @action(f"{self.api_prefix}/health", method=["GET"])
        def health():
            """Open health check: database primary/replica and store status."""
            status, body = health_report(
                app=services.settings.module_name,
                version=services.settings.module_version,
                database=services.database,
                store=services.store,
            )
            response.status = status
            return body

        @action(f"{self.api_prefix}/metrics", method=["GET"])
        @action.uses(self.service_key)
        def metrics():
            """Metrics as JSON, or Prometheus text with ``?format=prometheus``."""
            wants_text = request.query.get("format") == "prometheus" or "text/plain" in (
                request.headers.get("Accept") or ""
            )
            if wants_text:
                response.headers["Content-Type"] = "text/plain; version=0.0.4"
                return services.metrics.prometheus().decode()
            body = services.metrics.snapshot()
            body["database"] = {"replica_fallbacks": services.database.replica_fallbacks}
            for extra in services.metrics_extras:
                body.update(extra())
            return body
