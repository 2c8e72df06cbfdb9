"""Importable test kit: start apps as processes, stub outside services, build events.

Every test layer (unit, integration, e2e, browser, benchmarks) uses the same pieces
so a platform stub or an event builder exists once.
"""

from .events import chat_event, platform_event
from .modules import app_module
from .processes import FleetProcess, free_port
from .services import (
    TEST_DATABASE_URL,
    TEST_REDIS_HOST,
    TEST_REPLICA_URL,
    clear_store_prefix,
    create_database,
    database_url,
    drop_database,
    reset_postgres,
    run_sql,
    wait_for_replica,
)
from .stubs import Recorded, StubServer, lambda_stub, openwhisk_stub

__all__ = [
    "FleetProcess",
    "Recorded",
    "StubServer",
    "TEST_DATABASE_URL",
    "TEST_REDIS_HOST",
    "TEST_REPLICA_URL",
    "app_module",
    "chat_event",
    "clear_store_prefix",
    "create_database",
    "database_url",
    "drop_database",
    "free_port",
    "lambda_stub",
    "openwhisk_stub",
    "platform_event",
    "reset_postgres",
    "run_sql",
    "wait_for_replica",
]
