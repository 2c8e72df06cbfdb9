"""Keeping the router's list of alias commands equal to the aliases that exist.

The router finds a command by its name before it knows the community, so every alias
name used by any community is registered as a command of this module (prefix ``!``,
``/api/alias/run``); the run handler then looks the alias up in the caller's
community and answers nothing when that community has no such alias.

The router takes at most :data:`MAX_COMMANDS` commands per registration, so the names
are spread over *shards*: the module itself (``alias``, holding ``!alias`` and the
first names) and ``alias-2``, ``alias-3`` … as needed. A shard that is no longer
needed is registered again with no commands, which deactivates its names.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable

from waddlebot.http import HttpError
from waddlebot.modules import ModuleRegistration

log = logging.getLogger("waddlebot.alias.registration")

#: the router refuses a registration listing more commands than this
MAX_COMMANDS = 200
MANAGE_PATH = "/api/alias/manage"
RUN_PATH = "/api/alias/run"
#: seconds the router waits for an alias: it includes running the target command
RUN_TIMEOUT = 30

MANAGE_COMMAND = {
    "command": "alias",
    "prefix": "!",
    "type": "container",
    "location_url": MANAGE_PATH,
    "description": 'Aliases: !alias add !name "<command>", !alias remove !name, !alias list',
    "method": "POST",
    "timeout": 20,
    "min_role": "member",
    "trigger_type": "command",
}


def alias_command(name: str) -> dict:
    """The router command spec of one alias name."""
    return {
        "command": name,
        "prefix": "!",
        "type": "container",
        "location_url": RUN_PATH,
        "description": "A community alias (see !alias list)",
        "method": "POST",
        "timeout": RUN_TIMEOUT,
        "min_role": "member",
        "trigger_type": "command",
    }


def shard_name(module_name: str, position: int) -> str:
    """``alias`` for the first shard, ``alias-2`` … for the next ones."""
    return module_name if position == 0 else f"{module_name}-{position + 1}"


def is_own_module(module_name: str, candidate: str) -> bool:
    """Whether ``candidate`` is this module or one of its shards."""
    return candidate == module_name or bool(
        re.fullmatch(re.escape(module_name) + r"-[0-9]+", candidate)
    )


def registration_payloads(
    *, module_name: str, module_version: str, endpoint_url: str, names: Iterable[str]
) -> list[dict]:
    """One ``/api/modules/register`` body per shard, ``!alias`` first, names sorted."""
    specs = [MANAGE_COMMAND, *(alias_command(n) for n in sorted(set(names)))]
    chunks = [specs[i : i + MAX_COMMANDS] for i in range(0, len(specs), MAX_COMMANDS)]
    return [
        {
            "module_name": shard_name(module_name, position),
            "module_version": module_version,
            "module_type": "interaction",
            "platform": None,
            "endpoint_url": endpoint_url,
            "health_check_url": f"{endpoint_url}/api/alias/health",
            "core": True,
            "commands": chunk,
        }
        for position, chunk in enumerate(chunks)
    ]


class AliasRegistrar:
    """Registers every alias name with the router; ``sync`` after each change."""

    def __init__(
        self,
        *,
        router,
        module_name: str,
        module_version: str,
        endpoint_url: str,
        names: Callable[[], list[str]],
    ):
        self.router = router
        self.module_name = module_name
        self.module_version = module_version
        self.endpoint_url = endpoint_url.rstrip("/")
        self._names = names
        self._lock = threading.Lock()
        self._shards: int | None = None
        self.registration: ModuleRegistration | None = None

    def payloads(self) -> list[dict]:
        """The registrations that match the aliases stored right now."""
        return registration_payloads(
            module_name=self.module_name,
            module_version=self.module_version,
            endpoint_url=self.endpoint_url,
            names=self._names(),
        )

    def sync(self) -> None:
        """Register every shard, then empty shards left over; raises HttpError on failure."""
        with self._lock:
            payloads = self.payloads()
            for payload in payloads:
                self.router.register(payload)
            if self._shards is None or len(payloads) < self._shards:
                self._drop_stale_shards({p["module_name"] for p in payloads}, payloads[0])
            self._shards = len(payloads)

    def _drop_stale_shards(self, current: set[str], template: dict) -> None:
        stale = {
            c.module_name
            for c in self.router.commands()
            if is_own_module(self.module_name, c.module_name) and c.module_name not in current
        }
        for module_name in sorted(stale):
            self.router.register({**template, "module_name": module_name, "commands": []})

    def start(self, *, api_key: str, router_url: str) -> ModuleRegistration:
        """Register in the background until the router answers, then heartbeat."""
        registration = _SyncingRegistration(
            self,
            router_url=router_url,
            api_key=api_key,
            payload={"module_name": self.module_name},
        )
        self.registration = registration
        return registration.start()


class _SyncingRegistration(ModuleRegistration):
    """ModuleRegistration whose (re-)registration is a full :meth:`AliasRegistrar.sync`."""

    def __init__(self, registrar: AliasRegistrar, **kwargs):
        super().__init__(**kwargs)
        self.registrar = registrar

    def register_once(self) -> bool:
        """One full sync; False (retried with back-off) while the router or db is away."""
        try:
            self.registrar.sync()
        except HttpError as exc:
            self.last_error = str(exc)
            if exc.status is not None and 400 <= exc.status < 500:
                log.error("router refused the alias registration: %s", exc.body)
            return False
        except Exception as exc:  # noqa: BLE001 - the database may not be migrated yet
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("alias registration postponed: %s", self.last_error)
            return False
        self.registered.set()
        self.last_error = None
        return True
