"""Community data the portal shows and changes: stats, members, roles, modules, activity.

Read functions take any DAL (the read replica through ``Database.read`` where a little
lag is fine); write functions take the primary. Module switches are
``command_permissions`` rows per entity, and the router is told through its shared
command-catalogue version key, so every router process reloads within a second.
"""

from __future__ import annotations

import datetime

from waddlebot.db import ROLES, utcnow

#: the router's command catalogue reloads when this store counter changes
ROUTER_CATALOG_VERSION_KEY = "router:commands:version"
#: roles an owner may give in the portal (ownership itself is not handed over here)
ASSIGNABLE_ROLES = tuple(r for r in ROLES if r != "owner")


def entities_of(db, community_id: int) -> list[dict]:
    """The community's channels (entities), by entity id."""
    rows = db(db.entities.community_id == community_id).select(
        db.entities.entity_id,
        db.entities.platform,
        db.entities.server_id,
        db.entities.channel_id,
        db.entities.is_active,
        orderby=db.entities.entity_id,
    )
    return [
        {
            "entity_id": r.entity_id,
            "platform": r.platform,
            "server_id": r.server_id,
            "channel_id": r.channel_id,
            "is_active": bool(r.is_active),
        }
        for r in rows
    ]


def dashboard(db, community_id: int, *, now: datetime.datetime | None = None) -> dict:
    """Members, activity in the last 24 h / 7 d, top commands and reputation leaders."""
    now = now or utcnow()
    day, week = now - datetime.timedelta(days=1), now - datetime.timedelta(days=7)
    members = db.community_memberships
    in_community = (members.community_id == community_id) & (members.is_active == True)  # noqa: E712
    entity_ids = [e["entity_id"] for e in entities_of(db, community_id)]
    executions = db.command_executions
    responses = db.module_responses
    ran = executions.entity_id.belongs(entity_ids)
    answered = responses.entity_id.belongs(entity_ids)

    def _count(query) -> int:
        return db(query).count() if entity_ids else 0

    uses = executions.id.count()
    top = (
        db(ran & (executions.created_at >= week)).select(
            executions.command,
            uses,
            groupby=executions.command,
            orderby=~uses | executions.command,
            limitby=(0, 5),
        )
        if entity_ids
        else []
    )
    leaders = db(in_community & (db.users.id == members.user_id)).select(
        db.users.id,
        db.users.display_name,
        members.reputation,
        orderby=~members.reputation | db.users.id,
        limitby=(0, 5),
    )
    return {
        "members": db(in_community).count(),
        "active_members": {
            "day": db(in_community & (members.last_active >= day)).count(),
            "week": db(in_community & (members.last_active >= week)).count(),
        },
        "commands": {
            "day": _count(ran & (executions.created_at >= day)),
            "week": _count(ran & (executions.created_at >= week)),
        },
        "responses": {
            "day": _count(answered & (responses.created_at >= day)),
            "week": _count(answered & (responses.created_at >= week)),
        },
        "chatters": {
            "day": len(
                db(ran & (executions.created_at >= day)).select(executions.user_id, distinct=True)
            )
            if entity_ids
            else 0,
        },
        "top_commands": [{"command": r.command_executions.command, "uses": r[uses]} for r in top],
        "leaders": [
            {
                "user_id": r.users.id,
                "display_name": r.users.display_name,
                "reputation": r.community_memberships.reputation or 0,
            }
            for r in leaders
        ],
        "entities": entity_ids,
    }


def identities_of(db, user_ids: list[int]) -> dict[int, list[str]]:
    """``platform:username`` identities of each user."""
    if not user_ids:
        return {}
    found: dict[int, list[str]] = {u: [] for u in user_ids}
    rows = db(db.user_identities.user_id.belongs(user_ids)).select(
        db.user_identities.user_id,
        db.user_identities.platform,
        db.user_identities.platform_username,
        db.user_identities.platform_user_id,
        orderby=db.user_identities.platform | db.user_identities.id,
    )
    for r in rows:
        name = r.platform_username or r.platform_user_id
        found.setdefault(r.user_id, []).append(f"{r.platform}:{name}")
    return found


def roles_of(db, community_id: int, user_ids: list[int]) -> dict[int, str]:
    """The stored role (``community_rbac``) of each user; member when none."""
    if not user_ids:
        return {}
    rbac = db.community_rbac
    rows = db((rbac.community_id == community_id) & rbac.user_id.belongs(user_ids)).select(
        rbac.user_id, rbac.role
    )
    found = {r.user_id: r.role for r in rows}
    return {u: found.get(u, "member") for u in user_ids}


def member_choices(db, community_id: int) -> list[tuple[int, str]]:
    """(user id, label) of every member whose role an owner may change."""
    members = db.community_memberships
    community = db.communities(community_id)
    owner_id = community.owner_user_id if community else None
    rows = db(
        (members.community_id == community_id)
        & (members.is_active == True)  # noqa: E712
        & (db.users.id == members.user_id)
    ).select(db.users.id, db.users.display_name, orderby=db.users.display_name | db.users.id)
    return [(r.id, f"#{r.id} {r.display_name or ''}".strip()) for r in rows if r.id != owner_id]


def set_role(db, *, community_id: int, user_id: int, role: str, assigned_by: str) -> None:
    """Store a member's role; the caller bumps ``ROLES_VERSION_KEY`` after the commit so
    every router process reloads its role maps (within a second)."""
    if role not in ASSIGNABLE_ROLES:
        raise ValueError(f"role must be one of {', '.join(ASSIGNABLE_ROLES)}")
    community = db.communities(community_id)
    if community is not None and community.owner_user_id == user_id:
        raise ValueError("the community owner's role cannot be changed here")
    rbac = db.community_rbac
    query = (rbac.community_id == community_id) & (rbac.user_id == user_id)
    if db(query).update(role=role, assigned_by=assigned_by, assigned_at=utcnow()) == 0:
        rbac.insert(community_id=community_id, user_id=user_id, role=role, assigned_by=assigned_by)


def modules_overview(db, entity_ids: list[str]) -> list[dict]:
    """Installed interaction modules, core or marketplace, with their state per entity.

    A core module is on unless a ``command_permissions`` row switches it off; any other
    module is on only where a row switches it on (the router's rule).
    """
    modules = db.collector_modules
    commands = db.commands
    rows = db(
        (commands.is_active == True)  # noqa: E712
        & (commands.module_id == modules.id)
        & (modules.module_type != "collector")
    ).select(
        modules.module_name,
        modules.module_version,
        modules.core,
        modules.status,
        commands.id,
        commands.prefix,
        commands.command,
        commands.description,
        orderby=modules.module_name | commands.prefix | commands.command,
    )
    overrides: dict[tuple[str, int], bool] = {}
    if entity_ids and rows:
        permissions = db.command_permissions
        for p in db(
            permissions.entity_id.belongs(entity_ids)
            & permissions.command_id.belongs([r.commands.id for r in rows])
        ).select(permissions.entity_id, permissions.command_id, permissions.is_enabled):
            overrides[(p.entity_id, p.command_id)] = bool(p.is_enabled)
    found: dict[str, dict] = {}
    for r in rows:
        module = found.setdefault(
            r.collector_modules.module_name,
            {
                "module_name": r.collector_modules.module_name,
                "version": r.collector_modules.module_version,
                "kind": "core" if r.collector_modules.core else "marketplace",
                "status": r.collector_modules.status,
                "commands": [],
                "command_ids": [],
                "enabled": {},
            },
        )
        module["commands"].append(f"{r.commands.prefix}{r.commands.command}")
        module["command_ids"].append(r.commands.id)
    for module in found.values():
        core = module["kind"] == "core"
        for entity_id in entity_ids:
            states = [overrides.get((entity_id, c), core) for c in module["command_ids"]]
            module["enabled"][entity_id] = any(states)
    return list(found.values())


def set_module_enabled(db, *, entity_id: str, module_name: str, enabled: bool) -> int:
    """Switch every command of a module on or off in one entity; returns how many."""
    commands = db(
        (db.commands.module_name == module_name) & (db.commands.is_active == True)  # noqa: E712
    ).select(db.commands.id)
    permissions = db.command_permissions
    for command in commands:
        query = (permissions.entity_id == entity_id) & (permissions.command_id == command.id)
        if db(query).update(is_enabled=enabled) == 0:
            permissions.insert(
                entity_id=entity_id, command_id=command.id, is_enabled=enabled, config={}
            )
    return len(commands)


def recent_executions(db, entity_ids: list[str], *, limit: int = 50) -> list[dict]:
    """The latest command executions in these entities, newest first."""
    if not entity_ids:
        return []
    executions = db.command_executions
    rows = db(executions.entity_id.belongs(entity_ids)).select(
        executions.created_at,
        executions.entity_id,
        executions.command,
        executions.module_name,
        executions.user_id,
        executions.status,
        executions.execution_time_ms,
        executions.error_message,
        orderby=~executions.id,
        limitby=(0, limit),
    )
    return [
        {
            "created_at": r.created_at,
            "entity_id": r.entity_id,
            "command": r.command,
            "module_name": r.module_name,
            "user_id": r.user_id,
            "status": r.status,
            "execution_time_ms": r.execution_time_ms,
            "error_message": r.error_message,
        }
        for r in rows
    ]
