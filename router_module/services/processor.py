"""The event pipeline (spec "Event Processing Flow").

validate → de-duplicate → entity (first sight creates it) → session → for chat:
command lookup (``!``/``#``), enabled check, role check, rate limit, execution
(sequential in priority order, parallel ones concurrently) — or, with no command,
the string-rule seam; for other events: reputation and event-triggered modules.
Every execution is recorded; replies go out through :class:`Delivery`.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from waddlebot.contracts import MAX_MESSAGE, Event, ModuleResponse, parse_module_answer
from waddlebot.db import Database, utcnow
from waddlebot.ids import new_id
from waddlebot.sql import Writes
from waddlebot.store import Admission, Store, WindowResult
from waddlebot.web import ServiceUnavailable, ValidationError

from ..models import BUILTIN_TYPE
from .delivery import Delivery
from .engines import CallResult, ExecutionEngines
from .identities import Directory, EntityInfo, role_allows
from .registry import Command, CommandCatalog
from .reputation import points_for
from .usage import UsageCounter

log = logging.getLogger("waddlebot.router")


@dataclasses.dataclass(slots=True)
class Turn:
    """Everything known about one event while it is processed."""

    event: Event
    entity: EntityInfo
    session_id: str
    user_id: int
    role: str | None = None
    #: rate-window hits already recorded at admission, by command id (see _gate)
    windows: dict[int, WindowResult] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class Ticket:
    """An event let in by :meth:`EventProcessor.admit`: its session and its rate-window
    hits, or a duplicate."""

    session_id: str
    dedupe_key: str | None
    duplicate: bool = False
    windows: dict[int, WindowResult] = dataclasses.field(default_factory=dict)
    #: a chat line's command words (split_command), read once at admission
    parsed: tuple | None = None


def split_command(content: str) -> tuple[str, str, list[str], str] | None:
    """``!so bob`` → (``!``, ``so``, [``bob``], ``bob``); None when not a command."""
    text = content.strip()
    if len(text) < 2 or text[0] not in "!#" or text[1].isspace():
        return None
    head, _, rest = text[1:].partition(" ")
    try:
        args = shlex.split(rest)
    except ValueError:
        args = rest.split()
    return text[0], head.lower(), args, rest.strip()


#: how long an event waits for one of the ROUTER_MAX_CONCURRENT slots before the
#: collector is told to retry (503)
IN_FLIGHT_WAIT = 5.0


class EventProcessor:
    """Runs one event through the pipeline and reports what it did."""

    def __init__(
        self,
        *,
        settings,
        database: Database,
        store: Store,
        directory: Directory,
        catalog: CommandCatalog,
        engines: ExecutionEngines,
        delivery: Delivery,
        usage: UsageCounter,
        metrics,
    ):
        self.settings = settings
        self.database = database
        self.store = store
        self.directory = directory
        self.catalog = catalog
        self.engines = engines
        self.delivery = delivery
        self.usage = usage
        self.metrics = metrics
        #: seam for string-rule moderation: callable(turn, processor) -> dict | None
        self.string_rules = None
        self._parallel = ThreadPoolExecutor(
            max_workers=settings.max_workers, thread_name_prefix="modules"
        )
        #: events processed at once in this process (ROUTER_MAX_CONCURRENT). Under gthread
        #: the request threads bound it already; under gevent nothing else does, and each
        #: command holds a PostgreSQL connection while it writes.
        self._in_flight = threading.BoundedSemaphore(settings.max_concurrent)

    # -- entry point ------------------------------------------------------------------
    def process(self, event: Event) -> dict:
        """Process one validated event; returns the ``/events`` answer."""
        return self.run(event, self.admit([event])[0])

    def admit(self, events: list[Event]) -> list[Ticket]:
        """De-duplicate ``events``, open their sessions and hit the rate windows of the
        commands they name, in one round trip to the store.

        A batch is admitted at once, so 100 events cost one pipeline, not 100. A
        command's window is hit here, before its role check, so a refused attempt
        counts toward the user's limit as an executed one does; a duplicate counts in
        none.
        """
        if not events:
            return []
        wanted = []
        tickets = []
        session_ttl = float(self.settings.session_ttl)
        window = float(self.settings.dedupe_window)
        for event in events:
            session_id = new_id()
            dedupe_key = None
            if event.event_id:
                dedupe_key = f"router:seen:{event.platform}:{event.event_id}"
            parsed = None
            if event.message_type == "chatMessage":
                parsed = split_command(event.message_content or "")
                commands = self.catalog.lookup(parsed[0], parsed[1]) if parsed else []
            else:
                commands = self.catalog.for_event(event.message_type)
            wanted.append(
                Admission(
                    dedupe_key,
                    window,
                    f"{self.settings.session_prefix}{session_id}",
                    event.entity_id,
                    session_ttl,
                    tuple(self._window(event, c) for c in commands),
                )
            )
            tickets.append((Ticket(session_id, dedupe_key, parsed=parsed), commands))
        admitted = []
        for (ticket, commands), outcome in zip(tickets, self.store.admit_many(wanted), strict=True):
            ticket.duplicate = not outcome.fresh
            ticket.windows = {c.id: w for c, w in zip(commands, outcome.windows, strict=False)}
            admitted.append(ticket)
        return admitted

    def _window(self, event: Event, command: Command) -> tuple[str, int, float]:
        """The rate window (key, limit per minute, 60 s) of a user's use of a command."""
        limit = command.rate_limit or self.settings.default_rate_limit
        return f"router:rl:{event.entity_id}:{event.user_id}:{command.id}", limit, 60.0

    def run(self, event: Event, ticket: Ticket) -> dict:
        """Process an admitted event (see :meth:`admit`)."""
        started = time.perf_counter()
        if ticket.duplicate:
            self.metrics.events.labels("duplicate").inc()
            return {
                "status": "duplicate",
                "event_id": event.event_id,
                "message_type": event.message_type,
                "entity_id": event.entity_id,
            }
        try:
            if not self._in_flight.acquire(timeout=IN_FLIGHT_WAIT):
                self.metrics.events.labels("busy").inc()
                raise ServiceUnavailable(
                    f"the router is processing {self.settings.max_concurrent} events "
                    "(ROUTER_MAX_CONCURRENT); retry shortly"
                )
            try:
                answer = self._process(event, ticket)
            finally:
                self._in_flight.release()
        except BaseException:
            if ticket.dedupe_key:
                # let the collector's retry through: nothing was completed
                try:
                    self.store.delete(ticket.dedupe_key)
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise
        self.metrics.events.labels(answer["status"]).inc()
        self.metrics.latency.observe(time.perf_counter() - started)
        return answer

    def _process(self, event: Event, ticket: Ticket) -> dict:
        session_id = ticket.session_id
        entity = self.directory.entity(
            event.platform, event.server_id, event.channel_id, owner_user_id=event.owner_user_id
        )
        base = {
            "entity_id": entity.entity_id,
            "message_type": event.message_type,
            "event_id": event.event_id,
        }
        if not entity.is_active:
            self.store.delete(f"{self.settings.session_prefix}{session_id}")
            return {
                **base,
                "status": "inactive",
                "session_id": None,
                "matched": _matched(),
                "executions": [],
            }
        user_id = self.directory.user_id(event.platform, event.user_id, event.user_name)
        turn = Turn(event, entity, session_id, user_id, windows=ticket.windows)
        matched = _matched()
        executions: list[dict] = []
        if event.message_type == "chatMessage":
            parsed = ticket.parsed
            if parsed is not None:
                executions = self.run_command(turn, parsed, matched)
            elif self.string_rules is not None:
                rule = self.string_rules(turn, self)
                if rule:
                    matched["string_rule"] = rule.get("rule")
                    executions = rule.get("executions", [])
        else:
            triggered = [
                c
                for c in self.catalog.for_event(event.message_type)
                if self.catalog.enabled(entity, c)
            ]
            matched["event_triggers"] = [c.label for c in triggered]
            if triggered:
                executions = self._execute(
                    turn, triggered, prefix=None, name=None, args=[], args_text=""
                )
        # a line an alias expanded was already counted when the user typed the alias
        rerouted = bool(event.metadata.get("alias"))
        points = 0 if rerouted else points_for(event.platform, event.message_type, event.metadata)
        reputation = None
        if points:
            total = self.directory.add_reputation(entity.community_id, user_id, points)
            reputation = {"points": points, "total": total}
        return {
            **base,
            "status": "processed",
            "session_id": session_id,
            "matched": matched,
            "executions": executions,
            "reputation": reputation,
        }

    # -- commands ---------------------------------------------------------------------
    def run_command(self, turn: Turn, parsed, matched: dict) -> list[dict]:
        prefix, name, args, args_text = parsed
        commands = self.catalog.lookup(prefix, name)
        if not commands:
            self.metrics.unknown_commands.inc()
            matched["unknown_command"] = f"{prefix}{name}"
            return []
        matched["commands"] = [f"{prefix}{name}"]
        enabled = [c for c in commands if self.catalog.enabled(turn.entity, c)]
        if not enabled:
            return [self._refusal(turn, commands[0], "disabled", args)]
        return self._execute(
            turn, enabled, prefix=prefix, name=name, args=args, args_text=args_text
        )

    def role_of(self, turn: Turn) -> str:
        """The user's level in this community (computed once per event)."""
        if turn.role is None:
            turn.role = self.directory.role_of(
                turn.entity, turn.user_id, turn.event.user_id, turn.event.user_roles
            )
        return turn.role

    def _execute(
        self, turn: Turn, commands: list[Command], *, prefix, name, args, args_text
    ) -> list[dict]:
        ordered = sorted(commands, key=lambda c: (c.priority, c.id))
        results: dict[int, dict] = {}
        futures = {}
        for command in ordered:
            refusal = self._gate(turn, command, args)
            if refusal is not None:
                results[command.id] = refusal
            elif command.execution_mode == "parallel" and len(ordered) > 1:
                futures[command.id] = self._parallel.submit(
                    self._run_parallel, turn, command, args, args_text
                )
        for command in ordered:
            if command.id not in results and command.id not in futures:
                results[command.id] = self._run_one(turn, command, args, args_text)
        for command_id, future in futures.items():
            results[command_id] = future.result()
        return [results[c.id] for c in ordered]

    def _run_parallel(self, turn: Turn, command: Command, args, args_text) -> dict:
        # a pool thread has no request around it: its writes commit here
        with self.database.connection():
            return self._run_one(turn, command, args, args_text)

    def _gate(self, turn: Turn, command: Command, args) -> dict | None:
        """Role and rate-limit checks; a refusal record, or None to go ahead."""
        role = self.role_of(turn)
        if not role_allows(role, command.min_role):
            self.metrics.denied.inc()
            return self._refusal(turn, command, "denied", args)
        hit = turn.windows.pop(command.id, None)
        if hit is None:  # not named at admission (a string rule's command, a reload)
            hit = self.store.hit_window(*self._window(turn.event, command))
        if not hit.allowed:
            self.metrics.rate_limited.inc()
            return self._refusal(turn, command, "rate_limited", args, reply=False)
        return None

    def _refusal(self, turn: Turn, command: Command, status: str, args, reply: bool = True) -> dict:
        execution_id = new_id()
        messages = {
            "denied": f"@{turn.event.user_name}, {command.label} needs {command.min_role} "
            f"or higher here.",
            "disabled": f"{command.label} is not enabled in this community.",
        }
        db = self.database.primary
        db.command_executions.insert(
            execution_id=execution_id,
            session_id=turn.session_id,
            command_id=command.id,
            command=command.label,
            module_name=command.module_name,
            entity_id=turn.entity.entity_id,
            user_id=turn.event.user_id,
            message_content=turn.event.message_content,
            parameters=list(args),
            status=status,
            execution_time_ms=0,
            error_message=messages.get(status, status),
        )
        if reply and status in messages:
            self.reply(turn, messages[status], execution_id, command.module_name)
        return {
            "execution_id": execution_id,
            "command": command.label,
            "module": command.module_name,
            "status": status,
        }

    def payload(self, turn: Turn, command: Command, execution_id: str, args, args_text) -> dict:
        """The router's call to a module (DESIGN §8)."""
        event = turn.event
        return {
            "session_id": turn.session_id,
            "execution_id": execution_id,
            "entity_id": turn.entity.entity_id,
            "community_id": turn.entity.community_id,
            "platform": event.platform,
            "server_id": event.server_id,
            "channel_id": event.channel_id,
            "user": {
                "id": turn.user_id,
                "platform_user_id": event.user_id,
                "name": event.user_name,
                "role": self.role_of(turn),
            },
            "command": command.command if command.trigger_type != "event" else None,
            "prefix": command.prefix,
            "args": list(args),
            "args_text": args_text,
            "message_content": event.message_content,
            "message_type": event.message_type,
            "metadata": event.metadata,
        }

    def _run_one(self, turn: Turn, command: Command, args, args_text) -> dict:
        execution_id = new_id()
        payload = self.payload(turn, command, execution_id, args, args_text)
        if command.type == BUILTIN_TYPE:
            started = time.perf_counter()
            text = self.builtin(turn, command)
            result = CallResult("success", 200, {"response_action": "chat", "chat_message": text})
            result.elapsed_ms = int((time.perf_counter() - started) * 1000)
        else:
            result = self.engines.call(command, payload)
        responses: list[ModuleResponse] = []
        if result.status == "success":
            try:
                responses = parse_module_answer(result.data)
            except ValidationError as exc:
                result = CallResult(
                    "failed",
                    result.http_status,
                    result.data,
                    f"module answer invalid: {exc.message}",
                    result.elapsed_ms,
                )
        self.metrics.executions.labels(command.type, result.status).inc()
        db = self.database.primary
        # the execution record, its entity's usage counter and the responses
        # (dispatch_all below) reach the database in one round trip
        # a log of what ran: may lose its last fraction of a second to a server crash
        writes = Writes(db, synchronous_commit=False).insert(
            "command_executions",
            execution_id=execution_id,
            session_id=turn.session_id,
            command_id=command.id,
            command=command.label,
            module_name=command.module_name,
            entity_id=turn.entity.entity_id,
            user_id=turn.event.user_id,
            message_content=turn.event.message_content,
            parameters=list(args),
            location_url=command.location_url,
            request_payload=payload,
            response_status=result.http_status,
            response_data=result.data if isinstance(result.data, (dict, list)) else None,
            execution_time_ms=result.elapsed_ms,
            error_message=result.error,
            status=result.status,
        )
        if self.catalog.has_override(turn.entity, command):
            writes.increment(
                "command_permissions",
                {"entity_id": turn.entity.entity_id, "command_id": command.id},
                "usage_count",
                last_used=utcnow(),
            )
        self.usage.add(command.id)
        context = self.context(turn, execution_id)
        if result.status != "success":
            log.info("execution %s of %s failed: %s", execution_id, command.label, result.error)
            if turn.event.message_type == "chatMessage":
                reason = (
                    "timed out"
                    if result.status == "timeout"
                    else ("is busy" if result.status == "busy" else "is unavailable")
                )
                self.reply(
                    turn,
                    f"Sorry, {command.label} {reason} right now; try again in a moment.",
                    execution_id,
                    command.module_name,
                )
        named = [
            r if r.module_name else dataclasses.replace(r, module_name=command.module_name)
            for r in responses
        ]
        self.delivery.dispatch_all(db, named, context=context, writes=writes)
        return {
            "execution_id": execution_id,
            "command": command.label,
            "module": command.module_name,
            "status": result.status,
            "execution_time_ms": result.elapsed_ms,
            **({"error": result.error} if result.error else {}),
        }

    def context(self, turn: Turn, execution_id: str | None) -> dict:
        """Where a response for this event goes (delivery context)."""
        event = turn.event
        return {
            "execution_id": execution_id,
            "session_id": turn.session_id,
            "entity_id": turn.entity.entity_id,
            "platform": event.platform,
            "server_id": event.server_id,
            "channel_id": event.channel_id,
            "user_id": event.user_id,
        }

    def reply(self, turn: Turn, text: str, execution_id: str | None, module: str) -> None:
        """Send a chat line back to where the event came from."""
        response = ModuleResponse(response_action="chat", chat_message=text, module_name=module)
        self.delivery.dispatch(
            self.database.primary, response, context=self.context(turn, execution_id)
        )

    # -- built-in commands --------------------------------------------------------------
    def builtin(self, turn: Turn, command: Command) -> str:
        """Answer ``!help`` and ``!modules`` from what is enabled here."""
        role = self.role_of(turn)
        available = [
            c
            for c in self.catalog.all()
            if c.trigger_type in ("command", "both")
            and self.catalog.enabled(turn.entity, c)
            and role_allows(role, c.min_role)
        ]
        if command.command == "help":
            labels = sorted({c.label for c in available})
            return _fit("Commands you can use here: " + ", ".join(labels))
        modules: dict[str, str] = {}
        for c in self.catalog.all():
            if self.catalog.enabled(turn.entity, c):
                modules[c.module_name] = "core" if c.core else "marketplace"
        listed = ", ".join(f"{name} ({kind})" for name, kind in sorted(modules.items()))
        return _fit(f"Modules in this community: {listed}")


def _matched() -> dict:
    return {"commands": [], "string_rule": None, "event_triggers": []}


def _fit(text: str) -> str:
    """A built-in answer cut (at a list separator) to the chat limit of the contract."""
    if len(text) <= MAX_MESSAGE:
        return text
    cut = text.rfind(", ", 0, MAX_MESSAGE - 2)
    return text[: cut if cut > 0 else MAX_MESSAGE - 2] + " …"
