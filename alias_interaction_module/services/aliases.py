"""The aliases of each community: validation against the router, storage, statistics.

:class:`AliasBook` is the one place that writes ``command_aliases``. Creating an
alias checks, in order: the name, the template, that the name does not shadow a
built-in or installed command, that the command it runs exists (a command of another
module or an alias of the same community), and that alias chains stay loop-free and
at most five deep. A new alias name is registered with the router before the call
returns; if the router cannot be reached the alias is not kept.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from waddlebot.db import Database, utcnow
from waddlebot.http import HttpError

from .expansion import (
    AliasError,
    Expansion,
    check_chain,
    normalize_name,
    parse_template,
    resolve_chain,
    split_arguments,
)
from .registration import MANAGE_COMMAND, AliasRegistrar, is_own_module
from .router_client import RouterClient

log = logging.getLogger("waddlebot.alias")


class FieldError(AliasError):
    """An AliasError that belongs to one input field (for the HTTP API)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class RouterUnavailable(Exception):
    """The router could not be reached; nothing was changed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Alias:
    """One stored alias."""

    id: int
    community_id: int
    name: str
    command: str
    created_by: str | None
    usage_count: int
    last_used: datetime.datetime | None
    last_used_by: str | None
    created_at: datetime.datetime | None
    updated_at: datetime.datetime | None

    @property
    def label(self) -> str:
        """``!hi``."""
        return f"!{self.name}"

    def to_dict(self) -> dict:
        """JSON form for the management API."""
        data = dataclasses.asdict(self)
        data["label"] = self.label
        for key in ("last_used", "created_at", "updated_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _alias(row) -> Alias:
    return Alias(
        id=int(row.id),
        community_id=int(row.community_id),
        name=row.name,
        command=row.command,
        created_by=row.created_by,
        usage_count=int(row.usage_count or 0),
        last_used=row.last_used,
        last_used_by=row.last_used_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class AliasBook:
    """Create, replace, remove, list and resolve the aliases of communities."""

    def __init__(self, *, database: Database, router: RouterClient, module_name: str):
        self.database = database
        self.router = router
        self.module_name = module_name
        self.registrar: AliasRegistrar | None = None

    @property
    def db(self):
        """The primary connection (writes and read-your-own-write)."""
        return self.database.primary

    # -- lookups ------------------------------------------------------------------------
    def community_of(self, entity_id: str) -> int | None:
        """The community an entity belongs to, or None when the entity is unknown."""
        row = self.database.read(
            lambda d: (
                d(d.entities.entity_id == entity_id)
                .select(d.entities.community_id, limitby=(0, 1))
                .first()
            )
        )
        return int(row.community_id) if row and row.community_id else None

    def community_exists(self, community_id: int) -> bool:
        """Whether a community with this id exists."""
        return not self.db(self.db.communities.id == community_id).isempty()

    def names(self) -> list[str]:
        """Every alias name used by any community (what the router must route to us)."""
        with self.database.connection() as db:
            table = db.command_aliases
            rows = db(table.id > 0).select(table.name, distinct=True)
            return sorted(r.name for r in rows)

    def get(self, community_id: int, name: str) -> Alias | None:
        """One alias of a community by name."""
        table = self.db.command_aliases
        row = self.db((table.community_id == community_id) & (table.name == name)).select()
        return _alias(row.first()) if row else None

    def get_by_id(self, alias_id: int) -> Alias | None:
        """One alias by its id."""
        row = self.db.command_aliases(alias_id)
        return _alias(row) if row else None

    def list(self, community_id: int, *, page: int = 1, per_page: int = 500) -> tuple[int, list]:
        """(total, aliases of one page) of a community, by name."""
        table = self.db.command_aliases
        query = table.community_id == community_id
        total = self.db(query).count()
        rows = self.db(query).select(
            orderby=table.name, limitby=((page - 1) * per_page, page * per_page)
        )
        return total, [_alias(r) for r in rows]

    def templates(self, community_id: int) -> dict[str, str]:
        """``{name: command}`` of every alias of a community."""
        table = self.db.command_aliases
        rows = self.db(table.community_id == community_id).select(table.name, table.command)
        return {r.name: r.command for r in rows}

    # -- changes ------------------------------------------------------------------------
    def save(
        self, *, community_id: int, name: str, command: str, created_by: str | None
    ) -> tuple[Alias, bool]:
        """Create or replace an alias after every check; returns (alias, created)."""
        try:
            name = normalize_name(name)
        except AliasError as exc:
            raise FieldError(str(exc), "name") from None
        command = (command or "").strip()
        try:
            target = parse_template(command)
        except AliasError as exc:
            raise FieldError(str(exc), "command") from None
        try:
            installed = {
                (c.prefix, c.command)
                for c in self.router.commands()
                if c.typed and not is_own_module(self.module_name, c.module_name)
            }
        except HttpError as exc:
            log.warning("cannot list router commands: %s", exc)
            raise RouterUnavailable(str(exc)) from None
        if name == MANAGE_COMMAND["command"] or ("!", name) in installed:
            raise FieldError(
                f"!{name} is already a command here; an alias cannot replace it.", "name"
            )
        existing = self.templates(community_id)
        own = target.prefix == "!" and (
            target.name in existing or target.name in (name, MANAGE_COMMAND["command"])
        )
        if not own and (target.prefix, target.name) not in installed:
            raise FieldError(
                f"{target.label} is not a command here, so !{name} would have nothing to run.",
                "command",
            )
        try:
            check_chain(existing, name, command)
        except AliasError as exc:
            raise FieldError(str(exc), "command") from None
        return self._store(community_id, name, command, created_by)

    def _store(self, community_id, name, command, created_by) -> tuple[Alias, bool]:
        db = self.db
        table = db.command_aliases
        known_name = not db(table.name == name).isempty()
        current = self.get(community_id, name)
        if current is not None:
            db(table.id == current.id).update(command=command, updated_at=utcnow())
            db.commit()
            return self.get_by_id(current.id), False
        try:
            alias_id = table.insert(
                community_id=community_id, name=name, command=command, created_by=created_by
            )
            db.commit()
        except Exception as exc:  # noqa: BLE001 - a concurrent add of the same name won
            if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                raise
            db.rollback()
            return self._store(community_id, name, command, created_by)
        if not known_name:
            try:
                self._sync()
            except HttpError as exc:
                log.warning("alias !%s not registered with the router: %s", name, exc)
                db(table.id == alias_id).delete()
                db.commit()
                raise RouterUnavailable(str(exc)) from None
        return self.get_by_id(alias_id), True

    def remove(self, alias: Alias) -> None:
        """Delete an alias; its name leaves the router when no community uses it."""
        db = self.db
        table = db.command_aliases
        db(table.id == alias.id).delete()
        db.commit()
        if db(table.name == alias.name).isempty():
            try:
                self._sync()
            except HttpError as exc:
                # harmless: the router still routes the name here, and we answer nothing
                log.warning("router not told that !%s is gone: %s", alias.name, exc)

    def _sync(self) -> None:
        if self.registrar is not None:
            self.registrar.sync()

    # -- running --------------------------------------------------------------------------
    def expand(
        self, community_id: int, name: str, *, user: str, args_text: str
    ) -> Expansion | None:
        """The command line alias ``name`` runs for ``user``, None when there is no alias."""
        aliases = self.templates(community_id)
        if name not in aliases:
            return None
        args = split_arguments(args_text)
        return resolve_chain(aliases, name, user=user, args=args, args_text=args_text)

    def record_use(self, community_id: int, names, user: str) -> None:
        """Count one use of every alias in a chain."""
        table = self.db.command_aliases
        self.db(
            (table.community_id == community_id) & table.name.belongs(sorted(set(names)))
        ).update(usage_count=table.usage_count + 1, last_used=utcnow(), last_used_by=user)
