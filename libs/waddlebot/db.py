"""Database access: a primary for writes, a read replica for reads that may be stale.

:class:`Database` is a py4web fixture wrapping two pydal DAL objects. Actions use
``database.primary`` (``db`` below) for writes and read-your-own-write, and
``database.read(fn)`` for lookups that tolerate replication lag. When the replica is
unreachable the read runs on the primary instead and ``replica_fallbacks`` counts
it; the replica is retried after a short back-off.

The core tables several apps share are defined once here (:func:`define_core_tables`).
Each app adds its own tables through a ``define_tables(db)`` function in its
``models.py``; ``waddlebot migrate`` runs them all in one step.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import threadsafevariable
from py4web.core import DAL, ICECUBE, Fixture
from pydal import Field
from pydal._globals import THREAD_LOCAL
from pydal.migrator import InDBMigrator

log = logging.getLogger("waddlebot.db")

ROLES = ("owner", "admin", "moderator", "vip", "subscriber", "member")
PLATFORMS = ("twitch", "discord", "slack", "console")

TableDefiner = Callable[[DAL], None]


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names where it was looked for."""


def redact_uri(uri: str) -> str:
    """A database URI with the password removed, fit for logs and error messages."""
    if uri.startswith("sqlite:"):
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def utcnow() -> datetime.datetime:
    """Naive UTC now, the timestamp convention of every table."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def index(db: DAL, table: str, name: str, *columns: str, unique: bool = False) -> None:
    """Declare an index; ``waddlebot migrate`` creates it if it does not exist."""
    specs = db.__dict__.setdefault("_waddlebot_indexes", [])
    spec = (table, name, tuple(columns), unique)
    if spec not in specs:
        specs.append(spec)


def create_indexes(db: DAL) -> None:
    """Create every declared index (idempotent)."""
    for table, name, columns, unique in db.__dict__.get("_waddlebot_indexes", []):
        kind = "UNIQUE INDEX" if unique else "INDEX"
        db.executesql(f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({', '.join(columns)});")
    db.commit()


def define_core_tables(db: DAL) -> None:
    """Tables shared by several apps: servers, modules, entities, communities, users, roles."""
    if "servers" in db.tables:
        return
    now = utcnow
    db.define_table(
        "servers",
        Field("owner", "string", length=255),
        Field("platform", "string", length=32, notnull=True),
        Field("server_id", "string", length=255, notnull=True),
        Field("channel", "string", length=255, notnull=True),
        Field("is_active", "boolean", default=True),
        Field("webhook_url", "string", length=1024),
        Field("config", "json"),
        Field("last_activity", "datetime"),
        Field("created_at", "datetime", default=now),
        Field("updated_at", "datetime", default=now, update=now),
    )
    index(
        db,
        "servers",
        "servers_platform_server_channel",
        "platform",
        "server_id",
        "channel",
        unique=True,
    )
    db.define_table(
        "collector_modules",
        Field("module_name", "string", length=128, notnull=True, unique=True),
        Field("module_version", "string", length=64),
        Field("module_type", "string", length=32, default="interaction"),
        Field("platform", "string", length=32),
        Field("endpoint_url", "string", length=1024),
        Field("health_check_url", "string", length=1024),
        Field("core", "boolean", default=False),
        Field("status", "string", length=32, default="active"),
        Field("last_heartbeat", "datetime"),
        Field("config", "json"),
        Field("created_at", "datetime", default=now),
        Field("updated_at", "datetime", default=now, update=now),
    )
    index(db, "collector_modules", "collector_modules_platform", "platform", "module_type")
    db.define_table(
        "users",
        Field("display_name", "string", length=255),
        Field("created_at", "datetime", default=now),
    )
    db.define_table(
        "user_identities",
        Field("user_id", "reference users", ondelete="CASCADE"),
        Field("platform", "string", length=32, notnull=True),
        Field("platform_user_id", "string", length=255, notnull=True),
        Field("platform_username", "string", length=255),
        Field("created_at", "datetime", default=now),
    )
    index(
        db,
        "user_identities",
        "user_identities_platform_user",
        "platform",
        "platform_user_id",
        unique=True,
    )
    index(db, "user_identities", "user_identities_user", "user_id")
    db.define_table(
        "communities",
        Field("name", "string", length=255, notnull=True),
        Field("platform", "string", length=32),
        Field("owner_user_id", "reference users", ondelete="SET NULL"),
        Field("is_global", "boolean", default=False),
        Field("is_active", "boolean", default=True),
        Field("config", "json"),
        Field("created_at", "datetime", default=now),
    )
    db.define_table(
        "entities",
        Field("entity_id", "string", length=512, notnull=True, unique=True),
        Field("platform", "string", length=32, notnull=True),
        Field("server_id", "string", length=255, notnull=True),
        Field("channel_id", "string", length=255, notnull=True),
        Field("owner", "string", length=255),
        Field("community_id", "reference communities", ondelete="SET NULL"),
        Field("is_active", "boolean", default=True),
        Field("config", "json"),
        Field("created_at", "datetime", default=now),
    )
    index(db, "entities", "entities_community", "community_id")
    db.define_table(
        "community_memberships",
        Field("community_id", "reference communities", ondelete="CASCADE"),
        Field("user_id", "reference users", ondelete="CASCADE"),
        Field("reputation", "integer", default=0),
        Field("is_active", "boolean", default=True),
        Field("joined_at", "datetime", default=now),
        Field("last_active", "datetime", default=now),
    )
    index(
        db,
        "community_memberships",
        "community_memberships_pair",
        "community_id",
        "user_id",
        unique=True,
    )
    db.define_table(
        "community_rbac",
        Field("community_id", "reference communities", ondelete="CASCADE"),
        Field("user_id", "reference users", ondelete="CASCADE"),
        Field("role", "string", length=32, notnull=True, default="member"),
        Field("assigned_by", "string", length=255),
        Field("assigned_at", "datetime", default=now),
    )
    index(db, "community_rbac", "community_rbac_pair", "community_id", "user_id", unique=True)


def _new_dal(uri: str, *, pool_size: int, migrate: bool, folder: str | None) -> DAL:
    if uri.startswith("postgresql://"):
        # libpq/SQLAlchemy spelling (the spec's); pydal only knows ``postgres://``
        uri = "postgres://" + uri[len("postgresql://") :]
    dal = DAL(
        uri,
        pool_size=pool_size,
        migrate=migrate,
        fake_migrate=False,
        folder=folder,
        lazy_tables=False,
        check_reserved=None,
        adapter_args={"migrator": InDBMigrator},
        attempts=1,
    )
    _test_only_idle_connections(dal)
    return dal


#: a pooled connection released less than this many seconds ago is trusted without a probe
CONNECTION_TRUST_SECONDS = 5.0


def _test_only_idle_connections(dal: DAL) -> None:
    """pydal probes every pooled connection with ``SELECT 1`` when it is taken (a round
    trip, and a transaction to commit, per request); probe only those idle for a while."""
    adapter = dal._adapter
    probe = adapter.test_connection
    released: dict[int, float] = {}

    def test_connection():
        connection = getattr(THREAD_LOCAL, adapter._connection_uname_, None)
        last = released.pop(id(connection), None)
        if last is not None and time.monotonic() - last < CONNECTION_TRUST_SECONDS:
            return None
        return probe()

    adapter.test_connection = test_connection
    dal.__dict__["_waddlebot_released"] = released


def _note_release(dal: DAL) -> None:
    connection = getattr(THREAD_LOCAL, dal._adapter._connection_uname_, None)
    if connection is not None:
        dal.__dict__["_waddlebot_released"][id(connection)] = time.monotonic()


class Database(Fixture):
    """Primary + optional read replica, used as one py4web fixture."""

    #: seconds before a replica that failed is tried again
    replica_retry_after = 5.0

    def __init__(
        self,
        primary_uri: str,
        replica_uri: str | None = None,
        *,
        definers: Iterable[TableDefiner] = (),
        pool_size: int = 10,
        migrate: bool = False,
        folder: str | None = None,
        connect_attempts: int = 3,
    ):
        self.primary_uri = primary_uri
        self.replica_uri = replica_uri or None
        self.replica_fallbacks = 0
        self._replica_down_until = 0.0
        self._lock = threading.Lock()
        self._threads = threading.local()
        self.primary = self._connect_primary(pool_size, migrate, folder, connect_attempts)
        self.replica = None
        self._replica_settings = {"pool_size": pool_size, "folder": folder}
        self._definers = [define_core_tables, *definers]
        if primary_uri.startswith("sqlite:"):
            self.replica_uri = None
        for define in self._definers:
            define(self.primary)
        if migrate:
            create_indexes(self.primary)
        self.primary.commit()
        self.primary.recycle_connection_in_pool_or_close("commit")

    def _connect_primary(self, pool_size, migrate, folder, attempts) -> DAL:
        last_error = None
        for attempt in range(max(1, attempts)):
            try:
                return _new_dal(
                    self.primary_uri, pool_size=pool_size, migrate=migrate, folder=folder
                )
            except Exception as exc:  # noqa: BLE001 - any driver error means unreachable
                last_error = exc
                if attempt + 1 < attempts:
                    time.sleep(min(2.0, 0.25 * 2**attempt))
        lines = [ln.strip() for ln in str(last_error or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else "unknown error"
        raise DatabaseUnavailable(
            f"cannot reach the database at {redact_uri(self.primary_uri)} (DATABASE_URL): {reason}"
        )

    # -- connections ------------------------------------------------------------------
    def _state(self):
        state = self._threads.__dict__
        state.setdefault("depth", 0)
        state.setdefault("replica_open", False)
        return self._threads

    def _enter(self) -> None:
        state = self._state()
        if state.depth == 0:
            # what py4web's DAL fixture does, minus taking a connection up front: the
            # per-thread Field attributes are restored, and pydal takes a pooled
            # connection on the first statement, so a request that never touches the
            # database (most chat, answered from caches) costs no checkout and no COMMIT
            threadsafevariable.ThreadSafeVariable.restore(ICECUBE)
        state.depth += 1

    def _exit(self, action: str) -> None:
        state = self._state()
        state.depth -= 1
        if state.depth > 0:
            return
        if state.replica_open:
            state.replica_open = False
            with contextlib.suppress(Exception):
                _note_release(self.replica)
                self.replica.recycle_connection_in_pool_or_close("rollback")
        _note_release(self.primary)
        try:
            self.primary.recycle_connection_in_pool_or_close(action)
        except Exception as exc:
            if is_connection_error(exc):
                # a connection the server dropped is not pooled again, and this thread's
                # next statement connects anew instead of failing on it forever
                _forget_connection(self.primary)
            raise

    def on_request(self, context):
        """Start a request: both connections are taken lazily, on their first statement."""
        self._enter()

    def on_success(self, context):
        """Commit the primary and release both connections."""
        self._exit("commit")

    def on_error(self, context):
        """Roll back the primary: nothing half-written."""
        self._exit("rollback")

    @contextlib.contextmanager
    def connection(self):
        """A primary connection outside a request (CLI, background threads); reentrant."""
        self._enter()
        try:
            yield self.primary
        except BaseException:
            self._exit("rollback")
            raise
        self._exit("commit")

    # -- reads ------------------------------------------------------------------------
    def add_tables(self, definer: TableDefiner) -> None:
        """Define more tables (another app in the same process) on both connections."""
        if definer in self._definers:
            return
        self._definers.append(definer)
        definer(self.primary)
        if self.replica is not None:
            definer(self.replica)

    def replica_available(self) -> bool:
        """Whether reads currently go to the replica (connecting it on first use)."""
        if not self.replica_uri or time.monotonic() < self._replica_down_until:
            return False
        if self.replica is None:
            with self._lock:
                if self.replica is None:
                    try:
                        replica = _new_dal(
                            self.replica_uri, migrate=False, **self._replica_settings
                        )
                    except Exception as exc:  # noqa: BLE001 - unreachable replica
                        self._replica_down_until = time.monotonic() + self.replica_retry_after
                        self.replica_fallbacks += 1
                        log.warning(
                            "read replica unreachable at %s: %s", redact_uri(self.replica_uri), exc
                        )
                        return False
                    for define in self._definers:
                        define(replica)
                    replica.recycle_connection_in_pool_or_close("rollback")
                    self.replica = replica
        return True

    def _mark_replica_down(self, exc: Exception) -> None:
        with self._lock:
            self.replica_fallbacks += 1
            self._replica_down_until = time.monotonic() + self.replica_retry_after
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("read replica unavailable, reading from primary: %s", first)
        _forget_connection(self.replica)

    def read(self, fn: Callable[[DAL], object]):
        """Run ``fn(dal)`` on the replica, or on the primary if the replica is down."""
        if self.replica_available():
            state = self._state()
            try:
                if not state.replica_open:
                    self.replica.get_connection_from_pool_or_new()
                    state.replica_open = True
                result = fn(self.replica)
                if state.depth == 0:
                    state.replica_open = False
                    self.replica.recycle_connection_in_pool_or_close("rollback")
                return result
            except Exception as exc:  # noqa: BLE001 - any replica failure falls back
                if not is_connection_error(exc):
                    # end the failed (aborted) transaction: later reads get a clean connection
                    state.replica_open = False
                    with contextlib.suppress(Exception):
                        self.replica.recycle_connection_in_pool_or_close("rollback")
                    raise
                state.replica_open = False
                self._mark_replica_down(exc)
        with self.connection() as db:
            return fn(db)

    # -- health -----------------------------------------------------------------------
    def health(self) -> dict:
        """Status of the primary and the replica for the health endpoints."""
        status = {"primary": _probe(self.primary, self.primary_uri)}
        if not self.replica_uri:
            status["replica"] = {"status": "not_configured"}
        elif self.replica is None and not self.replica_available():
            status["replica"] = {"status": "down", "url": redact_uri(self.replica_uri)}
        else:
            status["replica"] = _probe(self.replica, self.replica_uri)
            if status["replica"]["status"] == "ok":
                self._replica_down_until = 0.0
        status["replica_fallbacks"] = self.replica_fallbacks
        return status

    def close(self) -> None:
        """Close every pooled connection (tests, shutdown)."""
        for dal in (self.primary, self.replica):
            if dal is None:
                continue
            with contextlib.suppress(Exception):
                dal.close()


def is_connection_error(exc: Exception) -> bool:
    """Whether ``exc`` says the database connection failed (not the statement)."""
    name = type(exc).__name__
    text = str(exc).lower()
    return name in ("OperationalError", "InterfaceError", "AttributeError") or any(
        word in text for word in ("connection", "could not connect", "server closed")
    )


def _forget_connection(dal: DAL) -> None:
    """Drop this thread's broken connection of ``dal`` (closed, not returned to the pool).

    pydal's own close() fails forever on a thread whose reconnect died half-way (a
    connection without a cursor), so the thread would never reach the server again.
    """
    adapter = dal._adapter
    broken = getattr(THREAD_LOCAL, adapter._connection_uname_, None)
    if broken is not None:
        with contextlib.suppress(Exception):
            broken.close()
    with contextlib.suppress(Exception):
        adapter.set_connection(None)


def _probe(dal: DAL, uri: str) -> dict:
    started = time.perf_counter()
    try:
        dal.get_connection_from_pool_or_new()
        try:
            dal.executesql("SELECT 1;")
        finally:
            dal.recycle_connection_in_pool_or_close("rollback")
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        _forget_connection(dal)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"status": "down", "url": redact_uri(uri), "error": first}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
