"""Fixtures and long-lived services of the router, built here and nowhere else."""

from concurrent.futures import ThreadPoolExecutor

from waddlebot.app import AppServices

from . import models
from .services.delivery import Delivery
from .services.engines import ExecutionEngines
from .services.identities import Directory
from .services.moderation import Moderation
from .services.processor import EventProcessor
from .services.rbac import RBACService
from .services.registry import CommandCatalog, ensure_builtins
from .services.usage import UsageCounter
from .settings import settings

services = AppServices(
    settings, short_name="router", api_prefix="/api/router", definers=[models.define_tables]
)
database = services.database
db = services.db
store = services.store
service_key = services.service_key
metrics = services.metrics

for _attempt in range(3):
    # several gunicorn workers boot at once on a fresh database: the loser of the
    # insert race rolls back and finds the winner's rows on the next pass
    try:
        with database.connection() as _db:
            ensure_builtins(_db)
        break
    except Exception as _exc:  # noqa: BLE001 - only a unique violation is expected
        if "unique" not in str(_exc).lower() and "duplicate" not in str(_exc).lower():
            raise

directory = Directory(database, entity_ttl=settings.entity_cache_ttl, store=store)
catalog = CommandCatalog(database, store, ttl=settings.command_cache_ttl)
engines = ExecutionEngines(settings, per_module_limit=max(2, settings.max_concurrent // 4))
delivery = Delivery(database, store, api_key=settings.api_keys[0].reveal())
rbac = RBACService(database, directory)
batch_pool = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="batch")


class RouterMetrics:
    """The router's counters and histograms (exported by /api/router/metrics)."""

    events = metrics.counter("events_total", "Events processed, by outcome", ("status",))
    latency = metrics.histogram("event_seconds", "Time to process one event")
    executions = metrics.counter("executions_total", "Module executions", ("engine", "status"))
    unknown_commands = metrics.counter("unknown_commands_total", "Commands nobody serves")
    denied = metrics.counter("denied_total", "Commands refused for the user's role")
    rate_limited = metrics.counter("rate_limited_total", "Commands over the rate limit")
    string_matches = metrics.counter(
        "string_matches_total", "Chat lines matched by a string rule", ("action",)
    )


processor = EventProcessor(
    settings=settings,
    database=database,
    store=store,
    directory=directory,
    catalog=catalog,
    engines=engines,
    delivery=delivery,
    usage=UsageCounter(database),
    metrics=RouterMetrics,
)

moderation = Moderation(
    database,
    store,
    allow_private=settings.webhook_allow_private_networks,
    ttl=settings.command_cache_ttl,
    executor=batch_pool,
)
processor.string_rules = moderation

services.metrics_extras.append(
    lambda: {
        "cache": {
            "entities": {"hits": directory.entities.hits, "misses": directory.entities.misses},
            "command_reloads": catalog.reloads,
        },
        "delivery": {"delivered": delivery.delivered, "failed": delivery.failed},
        "string_rules": {
            "matches": moderation.matches,
            "webhook_failures": moderation.webhook_failures,
        },
    }
)
