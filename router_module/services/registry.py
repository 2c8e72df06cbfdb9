"""Modules, collectors and their commands: registration and the hot-path lookup cache.

``register_module`` implements ``POST /api/modules/register`` (DESIGN §5): it upserts
the module row and its commands in one transaction and is idempotent. The
:class:`CommandCatalog` keeps every active command in memory, indexed by
``(prefix, command)`` and by event type, reloaded from the replica when its TTL runs
out or when any router process bumps the shared version key after a change.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from waddlebot.db import ROLES, Database, utcnow
from waddlebot.netguard import check_url
from waddlebot.store import Store, StoreUnavailable
from waddlebot.web import NotFound, ValidationError

from ..models import BUILTIN_TYPE, COMMAND_TYPES, EXECUTION_MODES, PREFIXES, TRIGGER_TYPES
from .identities import EntityInfo

VERSION_KEY = "router:commands:version"
MODULE_TYPES = ("interaction", "collector", "core")
COMMAND_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")

BUILTIN_COMMANDS = (
    {"command": "help", "description": "List the commands you can use here"},
    {"command": "modules", "description": "List the modules installed in this community"},
)


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """An active command as the processor needs it."""

    id: int
    command: str
    prefix: str
    description: str
    type: str
    location_url: str | None
    method: str
    timeout: int
    headers: dict
    rate_limit: int | None
    min_role: str
    module_id: int | None
    module_name: str
    module_type: str
    module_endpoint: str | None
    core: bool
    trigger_type: str
    event_types: tuple[str, ...]
    priority: int
    execution_mode: str

    @property
    def label(self) -> str:
        """``!help`` style name."""
        return f"{self.prefix}{self.command}"


def _field(spec: dict, name: str, kind, *, position: int, default=None, required=False):
    label = f"commands[{position}].{name}"
    value = spec.get(name, default)
    if value is None:
        if required:
            raise ValidationError(f"{label} is required", field=label)
        return default
    if kind is int and isinstance(value, bool):
        raise ValidationError(f"{label} must be an integer", field=label)
    if not isinstance(value, kind):
        kind_name = {
            str: "a string",
            int: "an integer",
            bool: "true or false",
            dict: "an object",
            list: "a list",
        }[kind]
        raise ValidationError(f"{label} must be {kind_name}", field=label)
    return value


def _choice(value, choices, label):
    if value not in choices:
        raise ValidationError(f"{label} must be one of: {', '.join(choices)}", field=label)
    return value


def parse_command_spec(spec, position: int, *, allow_private: bool) -> dict:
    """Validate one command of a registration; raise ValidationError naming the field."""
    if not isinstance(spec, dict):
        label = f"commands[{position}]"
        raise ValidationError(f"{label} must be an object", field=label)
    name = _field(spec, "command", str, position=position, required=True).strip().lower()
    label = f"commands[{position}]"
    if not name or len(name) > 64 or not set(name) <= COMMAND_NAME_CHARS:
        raise ValidationError(
            f"{label}.command must be 1-64 of a-z 0-9 _ -", field=f"{label}.command"
        )
    prefix = _choice(
        _field(spec, "prefix", str, position=position, default="!"), PREFIXES, f"{label}.prefix"
    )
    kind = _choice(
        _field(spec, "type", str, position=position, default="container"),
        COMMAND_TYPES,
        f"{label}.type",
    )
    location = _field(spec, "location_url", str, position=position)
    if kind in ("webhook",) and not location:
        raise ValidationError(
            f"{label}.location_url is required for {kind}", field=f"{label}.location_url"
        )
    if kind in ("lambda", "openwhisk") and not location:
        raise ValidationError(
            f"{label}.location_url is required for {kind}", field=f"{label}.location_url"
        )
    if kind == "webhook" or (location or "").startswith(("http://", "https://")):
        check_url(location, allow_private=allow_private, field=f"{label}.location_url")
    headers = _field(spec, "headers", dict, position=position, default={})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValidationError(
            f"{label}.headers must map strings to strings", field=f"{label}.headers"
        )
    event_types = _field(spec, "event_types", list, position=position, default=[])
    if not all(isinstance(e, str) for e in event_types):
        raise ValidationError(
            f"{label}.event_types must be a list of strings", field=f"{label}.event_types"
        )
    timeout = _field(spec, "timeout", int, position=position, default=10)
    if not 1 <= timeout <= 300:
        raise ValidationError(
            f"{label}.timeout must be between 1 and 300", field=f"{label}.timeout"
        )
    rate_limit = _field(spec, "rate_limit", int, position=position)
    if rate_limit is not None and rate_limit < 1:
        raise ValidationError(f"{label}.rate_limit must be >= 1", field=f"{label}.rate_limit")
    return {
        "command": name,
        "prefix": prefix,
        "type": kind,
        "location_url": location,
        "location": "internal" if prefix == "!" else "community",
        "description": _field(spec, "description", str, position=position, default="")[:512],
        "method": _choice(
            _field(spec, "method", str, position=position, default="POST").upper(),
            ("GET", "POST", "PUT"),
            f"{label}.method",
        ),
        "timeout": timeout,
        "headers": headers,
        "rate_limit": rate_limit,
        "min_role": _choice(
            _field(spec, "min_role", str, position=position, default="member"),
            ROLES,
            f"{label}.min_role",
        ),
        "trigger_type": _choice(
            _field(spec, "trigger_type", str, position=position, default="command"),
            TRIGGER_TYPES,
            f"{label}.trigger_type",
        ),
        "event_types": event_types,
        "priority": _field(spec, "priority", int, position=position, default=100),
        "execution_mode": _choice(
            _field(spec, "execution_mode", str, position=position, default="sequential"),
            EXECUTION_MODES,
            f"{label}.execution_mode",
        ),
    }


def parse_registration(data: dict, *, allow_private: bool) -> dict:
    """Validate a ``/api/modules/register`` payload (DESIGN §5)."""

    def text(name, *, required=False, max_len=1024):
        value = data.get(name)
        if value is None:
            if required:
                raise ValidationError(f"{name} is required", field=name)
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise ValidationError(f"{name} must be a non-empty string", field=name)
        if len(value) > max_len:
            raise ValidationError(f"{name} is too long", field=name)
        return value

    name = text("module_name", required=True, max_len=128).strip()
    if name == "router":
        raise ValidationError("module_name 'router' is reserved", field="module_name")
    module_type = text("module_type") or "interaction"
    _choice(module_type, MODULE_TYPES, "module_type")
    platform = text("platform")
    if module_type == "collector" and platform not in ("twitch", "discord", "slack", "console"):
        raise ValidationError(
            "platform must be twitch, discord, slack or console for a collector", field="platform"
        )
    endpoint = text("endpoint_url")
    if module_type == "collector" and not endpoint:
        raise ValidationError("endpoint_url is required for a collector", field="endpoint_url")
    if endpoint:
        check_url(endpoint, allow_private=allow_private, field="endpoint_url")
    health = text("health_check_url")
    if health:
        check_url(health, allow_private=allow_private, field="health_check_url")
    core = data.get("core", False)
    if not isinstance(core, bool):
        raise ValidationError("core must be true or false", field="core")
    commands = data.get("commands") or []
    if not isinstance(commands, list):
        raise ValidationError("commands must be a list", field="commands")
    if len(commands) > 200:
        raise ValidationError("commands has more than 200 entries", field="commands")
    parsed = [parse_command_spec(c, i, allow_private=allow_private) for i, c in enumerate(commands)]
    seen = set()
    for i, spec in enumerate(parsed):
        key = (spec["prefix"], spec["command"])
        if key in seen:
            raise ValidationError(
                f"commands[{i}] repeats {spec['prefix']}{spec['command']}",
                field=f"commands[{i}].command",
            )
        seen.add(key)
        if spec["type"] == "container" and not spec["location_url"] and not endpoint:
            raise ValidationError(
                f"commands[{i}].location_url or endpoint_url is required",
                field=f"commands[{i}].location_url",
            )
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValidationError("config must be an object", field="config")
    return {
        "module_name": name,
        "module_version": text("module_version", max_len=64) or "0.0.0",
        "module_type": module_type,
        "platform": platform,
        "endpoint_url": endpoint.rstrip("/") if endpoint else None,
        "health_check_url": health,
        "core": core,
        "config": config,
        "commands": parsed,
    }


def register_module(db, registration: dict) -> dict:
    """Upsert the module and its commands; commands it no longer lists are deactivated."""
    modules = db.collector_modules
    fields = {k: v for k, v in registration.items() if k != "commands"}
    row = db(modules.module_name == fields["module_name"]).select().first()
    now = utcnow()
    if row is None:
        module_id = modules.insert(**fields, status="active", last_heartbeat=now)
        created = True
    else:
        module_id = row.id
        row.update_record(**fields, status="active", last_heartbeat=now)
        created = False
    module_type = "core" if registration["core"] else "marketplace"
    kept = []
    for spec in registration["commands"]:
        query = (
            (db.commands.module_name == fields["module_name"])
            & (db.commands.prefix == spec["prefix"])
            & (db.commands.command == spec["command"])
        )
        values = dict(
            spec,
            module_id=module_id,
            module_name=fields["module_name"],
            module_type=module_type,
            version=fields["module_version"],
            is_active=True,
        )
        existing = db(query).select(db.commands.id).first()
        if existing is None:
            kept.append(db.commands.insert(**values))
        else:
            db(db.commands.id == existing.id).update(**values)
            kept.append(existing.id)
    stale = (db.commands.module_name == fields["module_name"]) & (db.commands.is_active == True)  # noqa: E712
    if kept:
        stale &= ~db.commands.id.belongs(kept)
    deactivated = db(stale).update(is_active=False)
    return {
        "module_id": int(module_id),
        "module_name": fields["module_name"],
        "created": created,
        "commands": len(kept),
        "deactivated": deactivated,
    }


def ensure_builtins(db) -> None:
    """The router's own module row and its built-in commands (``!help``, ``!modules``)."""
    modules = db.collector_modules
    row = db(modules.module_name == "router").select().first()
    if row is None:
        module_id = modules.insert(
            module_name="router",
            module_version="1.0.0",
            module_type="core",
            core=True,
            status="active",
        )
    else:
        module_id = row.id
    for spec in BUILTIN_COMMANDS:
        query = (
            (db.commands.module_name == "router")
            & (db.commands.prefix == "!")
            & (db.commands.command == spec["command"])
        )
        if db(query).isempty():
            db.commands.insert(
                prefix="!",
                type=BUILTIN_TYPE,
                location="internal",
                module_id=module_id,
                module_name="router",
                module_type="core",
                trigger_type="command",
                event_types=[],
                priority=0,
                execution_mode="sequential",
                min_role="member",
                headers={},
                timeout=5,
                version="1.0.0",
                **spec,
            )


def heartbeat(db, module_name: str, status: str) -> dict:
    """Record a module's heartbeat; 404 when it never registered."""
    modules = db.collector_modules
    row = db(modules.module_name == module_name).select().first()
    if row is None:
        raise NotFound(f"module {module_name!r} is not registered", field="module_name")
    row.update_record(last_heartbeat=utcnow(), status=status)
    return {
        "module_name": module_name,
        "status": status,
        "last_heartbeat": row.last_heartbeat.isoformat(),
    }


class CommandCatalog:
    """All active commands in memory, reloaded on TTL expiry or a version bump."""

    #: how often the shared version key is checked, in seconds
    version_check_interval = 1.0

    def __init__(self, database: Database, store: Store, *, ttl: float):
        self.database = database
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._version: str | None = None
        self._by_name: dict[tuple[str, str], list[Command]] = {}
        self._by_event: dict[str, list[Command]] = {}
        self._all: list[Command] = []
        self._permissions: dict[str, dict[int, bool]] = {}
        self._permissions_loaded: dict[str, float] = {}
        self.reloads = 0

    def invalidate(self) -> None:
        """Drop the in-memory copy here and tell every other router process."""
        with self._lock:
            self._loaded_at = 0.0
            self._permissions.clear()
            self._permissions_loaded.clear()
        try:
            self.store.incr(VERSION_KEY)
        except StoreUnavailable:
            pass

    def _fresh(self) -> None:
        now = time.monotonic()
        if (
            now - self._loaded_at < self.ttl
            and now - self._checked_at < self.version_check_interval
        ):
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.version_check_interval:
                self._checked_at = now
                try:
                    version = self.store.get(VERSION_KEY)
                except StoreUnavailable:
                    version = self._version
                if version != self._version:
                    self._version = version
                    self._loaded_at = 0.0
                    self._permissions.clear()
                    self._permissions_loaded.clear()
            if now - self._loaded_at < self.ttl:
                return
            # a reload forced by a change reads the primary: the replica may lag behind it
            self._load(from_primary=self._loaded_at == 0.0)
            self._loaded_at = time.monotonic()

    def _load(self, *, from_primary: bool = False) -> None:
        def fetch(d):
            joined = d(d.commands.is_active == True).select(  # noqa: E712
                d.commands.ALL,
                d.collector_modules.endpoint_url,
                d.collector_modules.core,
                left=d.collector_modules.on(d.collector_modules.id == d.commands.module_id),
                orderby=d.commands.priority | d.commands.id,
            )
            return [_command(r.commands, r.collector_modules) for r in joined]

        if from_primary:
            with self.database.connection() as primary:
                commands = fetch(primary)
        else:
            commands = self.database.read(fetch)
        by_name: dict[tuple[str, str], list[Command]] = {}
        by_event: dict[str, list[Command]] = {}
        for command in commands:
            if command.trigger_type in ("command", "both"):
                by_name.setdefault((command.prefix, command.command), []).append(command)
            if command.trigger_type in ("event", "both"):
                for event_type in command.event_types:
                    by_event.setdefault(event_type, []).append(command)
        self._by_name, self._by_event, self._all = by_name, by_event, commands
        self.reloads += 1

    def lookup(self, prefix: str, name: str) -> list[Command]:
        """Commands answering ``prefix+name``, in priority order."""
        self._fresh()
        return self._by_name.get((prefix, name), [])

    def for_event(self, message_type: str) -> list[Command]:
        """Modules triggered by this event type, in priority order."""
        self._fresh()
        return self._by_event.get(message_type, [])

    def all(self) -> list[Command]:
        """Every active command."""
        self._fresh()
        return self._all

    def has_override(self, entity: EntityInfo, command: Command) -> bool:
        """Whether a ``command_permissions`` row exists for this command here."""
        return command.id in self._permissions.get(entity.entity_id, {})

    def enabled(self, entity: EntityInfo, command: Command) -> bool:
        """Core modules are on unless switched off here; others only when switched on."""
        self._fresh()
        now = time.monotonic()
        overrides = self._permissions.get(entity.entity_id)
        if overrides is None or now - self._permissions_loaded.get(entity.entity_id, 0) > self.ttl:
            rows = self.database.read(
                lambda d: d(d.command_permissions.entity_id == entity.entity_id).select(
                    d.command_permissions.command_id, d.command_permissions.is_enabled
                )
            )
            overrides = {r.command_id: bool(r.is_enabled) for r in rows}
            with self._lock:
                self._permissions[entity.entity_id] = overrides
                self._permissions_loaded[entity.entity_id] = now
        if command.id in overrides:
            return overrides[command.id]
        return command.core


def _command(row, module) -> Command:
    return Command(
        id=row.id,
        command=row.command,
        prefix=row.prefix,
        description=row.description or "",
        type=row.type,
        location_url=row.location_url,
        method=row.method or "POST",
        timeout=row.timeout or 10,
        headers=row.headers or {},
        rate_limit=row.rate_limit,
        min_role=row.min_role or "member",
        module_id=row.module_id,
        module_name=row.module_name or "",
        module_type=row.module_type or "core",
        module_endpoint=module.endpoint_url if module else None,
        core=bool(module.core) if module and module.core is not None else row.module_type == "core",
        trigger_type=row.trigger_type or "command",
        event_types=tuple(row.event_types or ()),
        priority=row.priority if row.priority is not None else 100,
        execution_mode=row.execution_mode or "sequential",
    )
