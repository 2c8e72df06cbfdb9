"""Entities, communities, bot users and their platform identities, and user levels.

First sight of an entity creates it and its community (owned by the event's
``owner_user_id``); first sight of a platform user creates a bot user and the
identity. Lookups go through in-memory TTL caches backed by the read replica;
creation goes to the primary and survives a concurrent creator (unique indexes).
"""

from __future__ import annotations

import dataclasses
import threading

from waddlebot.contracts import entity_id_for
from waddlebot.db import Database, utcnow
from waddlebot.router_tables import ROLES_VERSION_KEY
from waddlebot.store import Store

from .cache import SharedVersion, TTLCache

ROLE_LEVELS = {"member": 0, "subscriber": 1, "vip": 2, "moderator": 3, "admin": 4, "owner": 5}
BADGE_ROLES = {
    "broadcaster": "owner",
    "owner": "owner",
    "admin": "admin",
    "moderator": "moderator",
    "vip": "vip",
    "subscriber": "subscriber",
    "member": "member",
}


def higher_role(*roles: str | None) -> str:
    """The highest of several role names (unknown or None count as member)."""
    best = "member"
    for role in roles:
        if role in ROLE_LEVELS and ROLE_LEVELS[role] > ROLE_LEVELS[best]:
            best = role
    return best


def role_from_badges(badges) -> str:
    """The level a collector's badges grant (broadcaster ⇒ owner, …)."""
    return higher_role(*(BADGE_ROLES.get(b) for b in badges))


def role_allows(role: str, min_role: str) -> bool:
    """Whether ``role`` meets ``min_role``."""
    return ROLE_LEVELS.get(role, 0) >= ROLE_LEVELS.get(min_role, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class EntityInfo:
    """An entity as the hot path needs it."""

    id: int
    entity_id: str
    platform: str
    server_id: str
    channel_id: str
    owner: str | None
    community_id: int
    is_active: bool


def _entity_info(row) -> EntityInfo:
    return EntityInfo(
        row.id,
        row.entity_id,
        row.platform,
        row.server_id,
        row.channel_id,
        row.owner,
        row.community_id,
        bool(row.is_active),
    )


def _is_unique_violation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unique" in text or "duplicate" in text


class Directory:
    """Entities, communities, users and roles with caches in front of the database."""

    #: how often the shared roles version counter is checked, in seconds
    version_check_interval = 1.0

    def __init__(
        self,
        database: Database,
        *,
        entity_ttl: float,
        user_ttl: float = 600.0,
        role_ttl: float = 600.0,
        store: Store | None = None,
    ):
        self.database = database
        self.entities = TTLCache(entity_ttl)
        self.users = TTLCache(user_ttl, max_items=200_000)
        # role maps live long: a change anywhere bumps ROLES_VERSION_KEY, seen here within
        # version_check_interval (without a store, role_ttl alone bounds staleness)
        self.roles = TTLCache(role_ttl if store is not None else min(role_ttl, 30.0), 200_000)
        self.roles_version = (
            SharedVersion(store, ROLES_VERSION_KEY, interval=self.version_check_interval)
            if store is not None
            else None
        )
        self._create_lock = threading.Lock()
        self._user_lock = threading.Lock()

    # -- entities ---------------------------------------------------------------------
    def entity(
        self,
        platform: str,
        server_id: str,
        channel_id: str,
        *,
        owner_user_id: str | None = None,
        owner_name: str | None = None,
    ) -> EntityInfo:
        """The entity for this channel, created with its community on first sight."""
        key = entity_id_for(platform, server_id, channel_id)
        cached = self.entities.get(key)
        if cached is not None:
            return cached
        row = self.database.read(lambda d: d(d.entities.entity_id == key).select().first())
        if row is None:
            row = self._create_entity(platform, server_id, channel_id, owner_user_id, owner_name)
        info = _entity_info(row)
        self.entities.put(key, info)
        return info

    def find_entity(self, entity_id: str) -> EntityInfo | None:
        """An existing entity by id, or None."""
        cached = self.entities.get(entity_id)
        if cached is not None:
            return cached
        row = self.database.read(lambda d: d(d.entities.entity_id == entity_id).select().first())
        if row is None:
            return None
        info = _entity_info(row)
        self.entities.put(entity_id, info)
        return info

    def _create_entity(self, platform, server_id, channel_id, owner_user_id, owner_name):
        db = self.database.primary
        key = entity_id_for(platform, server_id, channel_id)
        with self._create_lock:
            existing = db(db.entities.entity_id == key).select().first()
            if existing is not None:
                return existing
            owner_bot_id = None
            if owner_user_id:
                owner_bot_id = self.user_id(platform, owner_user_id, owner_name or owner_user_id)
            sibling = (
                db((db.entities.platform == platform) & (db.entities.server_id == server_id))
                .select(db.entities.community_id, limitby=(0, 1))
                .first()
            )
            if sibling is not None and sibling.community_id:
                community_id = sibling.community_id
            else:
                community_id = db.communities.insert(
                    name=key if platform != "console" else f"console {server_id}",
                    platform=platform,
                    owner_user_id=owner_bot_id,
                    config={},
                )
            if owner_bot_id:
                self._set_role(db, community_id, owner_bot_id, "owner", "first-sight")
            db.entities.insert(
                entity_id=key,
                platform=platform,
                server_id=server_id,
                channel_id=channel_id,
                owner=owner_user_id,
                community_id=community_id,
                config={},
            )
            db.commit()
            return db(db.entities.entity_id == key).select().first()

    def activate(
        self,
        platform: str,
        server_id: str,
        channel_id: str,
        *,
        owner_user_id: str | None,
        config: dict,
    ) -> EntityInfo:
        """Create or re-activate the server row, the entity and its community."""
        db = self.database.primary
        info = self.entity(platform, server_id, channel_id, owner_user_id=owner_user_id)
        db(db.entities.id == info.id).update(is_active=True, config=config or {})
        server = (
            db(
                (db.servers.platform == platform)
                & (db.servers.server_id == server_id)
                & (db.servers.channel == channel_id)
            )
            .select()
            .first()
        )
        if server is None:
            db.servers.insert(
                platform=platform,
                server_id=server_id,
                channel=channel_id,
                owner=owner_user_id,
                is_active=True,
                config=config or {},
            )
        else:
            server.update_record(
                is_active=True, owner=owner_user_id or server.owner, config=config or server.config
            )
        self.entities.pop(info.entity_id)
        return dataclasses.replace(info, is_active=True)

    # -- users ------------------------------------------------------------------------
    def user_id(self, platform: str, platform_user_id: str, user_name: str) -> int:
        """The bot user behind a platform identity, created on first sight."""
        key = (platform, platform_user_id)
        cached = self.users.get(key)
        if cached is not None:
            return cached
        identities = self.database.primary.user_identities
        row = self.database.read(
            lambda d: (
                d(
                    (d.user_identities.platform == platform)
                    & (d.user_identities.platform_user_id == platform_user_id)
                )
                .select(d.user_identities.user_id)
                .first()
            )
        )
        if row is None:
            db = self.database.primary
            query = (identities.platform == platform) & (
                identities.platform_user_id == platform_user_id
            )
            # concurrent first sight (batch workers, router replicas): serialise here and
            # commit under the lock like _create_entity; another process winning the
            # unique index is read back instead of failing the event
            with self._user_lock:
                found = db(query).select(identities.user_id).first()
                if found is None:
                    try:
                        user = db.users.insert(display_name=user_name)
                        db.user_identities.insert(
                            user_id=user,
                            platform=platform,
                            platform_user_id=platform_user_id,
                            platform_username=user_name,
                        )
                        db.commit()
                    except Exception as exc:  # noqa: BLE001 - a concurrent creator won
                        if not _is_unique_violation(exc):
                            raise
                        db.rollback()
                        found = db(query).select(identities.user_id).first()
                        if found is None:
                            raise
                    else:
                        bot_id = int(user)
                if found is not None:
                    bot_id = found.user_id
        else:
            bot_id = row.user_id
        self.users.put(key, bot_id)
        return bot_id

    def context(self, platform: str, platform_user_id: str, user_name: str) -> dict:
        """The bot user and every identity it has (``POST /api/context``)."""
        bot_id = self.user_id(platform, platform_user_id, user_name)
        db = self.database.primary
        user = db.users[bot_id]
        identities = db(db.user_identities.user_id == bot_id).select(orderby=db.user_identities.id)
        return {
            "user": {"id": bot_id, "display_name": user.display_name if user else user_name},
            "identities": [
                {
                    "platform": i.platform,
                    "platform_user_id": i.platform_user_id,
                    "platform_username": i.platform_username,
                }
                for i in identities
            ],
        }

    # -- roles ------------------------------------------------------------------------
    def stored_role(self, community_id: int, user_id: int) -> str:
        """The role ``community_rbac`` stores (member when none).

        A community's whole role map is cached (it only has rows for people with a
        role), so a member's command costs no database read.
        """
        self._fresh_roles()
        roles = self.roles.get(community_id)
        if roles is None:
            rows = self.database.read(
                lambda d: d(d.community_rbac.community_id == community_id).select(
                    d.community_rbac.user_id, d.community_rbac.role
                )
            )
            roles = {r.user_id: r.role for r in rows}
            self.roles.put(community_id, roles)
        return roles.get(user_id, "member")

    def _fresh_roles(self) -> None:
        """Drop every cached role map when another process changed a role."""
        if self.roles_version is not None and self.roles_version.moved():
            self.roles.clear()

    def role_of(self, entity: EntityInfo, user_id: int, platform_user_id: str, badges) -> str:
        """The user's level here: the higher of platform badges and stored role."""
        badge_role = role_from_badges(badges)
        if entity.owner and entity.owner == platform_user_id:
            badge_role = "owner"
        if badge_role == "owner":
            return "owner"
        return higher_role(badge_role, self.stored_role(entity.community_id, user_id))

    def set_role(self, community_id: int, user_id: int, role: str, assigned_by: str) -> None:
        """Store a role for a user in a community (upsert)."""
        self._set_role(self.database.primary, community_id, user_id, role, assigned_by)
        self.roles.pop(community_id)
        self.roles_changed()

    def roles_changed(self) -> None:
        """Tell every router process (this one included) to reload role maps."""
        if self.roles_version is not None:
            self.roles_version.bump()  # store down: the others refresh after role_ttl

    @staticmethod
    def _set_role(db, community_id, user_id, role, assigned_by) -> None:
        query = (db.community_rbac.community_id == community_id) & (
            db.community_rbac.user_id == user_id
        )
        if db(query).update(role=role, assigned_by=assigned_by, assigned_at=utcnow()) == 0:
            db.community_rbac.insert(
                community_id=community_id, user_id=user_id, role=role, assigned_by=assigned_by
            )

    # -- reputation -------------------------------------------------------------------
    def add_reputation(self, community_id: int, user_id: int, points: int) -> int:
        """Add points to a member's reputation (joining them first); returns the total."""
        db = self.database.primary
        memberships = db.community_memberships
        query = (memberships.community_id == community_id) & (memberships.user_id == user_id)
        updated = db(query).update(reputation=memberships.reputation + points, last_active=utcnow())
        if not updated:
            try:
                memberships.insert(community_id=community_id, user_id=user_id, reputation=points)
            except Exception as exc:  # noqa: BLE001 - a concurrent first insert won
                if not _is_unique_violation(exc):
                    raise
                db.rollback()
                db(query).update(reputation=memberships.reputation + points)
        row = db(query).select(memberships.reputation).first()
        return row.reputation if row else points

    def reputation(self, community_id: int, user_id: int) -> int:
        """A member's reputation points (0 when not a member)."""
        db = self.database.primary
        row = (
            db(
                (db.community_memberships.community_id == community_id)
                & (db.community_memberships.user_id == user_id)
            )
            .select(db.community_memberships.reputation)
            .first()
        )
        return row.reputation if row else 0
