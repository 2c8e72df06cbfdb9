"""Role-based access in communities, with the spec's bulk operations.

Bulk calls fan out over a small ThreadPoolExecutor (10 workers, as the spec asks),
each worker with its own primary connection, so thousands of users are handled
concurrently without holding one long transaction.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from waddlebot.db import ROLES, Database
from waddlebot.web import ValidationError

from .identities import Directory, role_allows

BULK_LIMIT = 1000


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)] or []


class RBACService:
    """Roles per community: check, assign, read, onboard — one at a time or in bulk."""

    def __init__(self, database: Database, directory: Directory, workers: int = 10):
        self.database = database
        self.directory = directory
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rbac")

    def _fan_out(self, fn, items: list, chunk: int = 100) -> list:
        if len(items) > BULK_LIMIT:
            raise ValidationError(f"at most {BULK_LIMIT} items per bulk call", field="items")
        futures = [self._pool.submit(fn, part) for part in _chunks(items, chunk)]
        results: list = []
        for future in futures:
            results.extend(future.result())
        return results

    def get_user_roles_bulk(self, community_id: int, user_ids: list[int]) -> dict[int, str]:
        """Stored role of each user (member when none)."""

        def read(part):
            rows = self.database.read(
                lambda d: d(
                    (d.community_rbac.community_id == community_id)
                    & d.community_rbac.user_id.belongs(part)
                ).select(d.community_rbac.user_id, d.community_rbac.role)
            )
            found = {r.user_id: r.role for r in rows}
            return [(u, found.get(u, "member")) for u in part]

        return dict(self._fan_out(read, list(user_ids)))

    def check_permissions_bulk(self, checks: list[tuple[int, int, str]]) -> list[bool]:
        """For each (community_id, user_id, min_role): does the stored role meet it."""

        def check(part):
            return [role_allows(self.directory.stored_role(c, u), need) for c, u, need in part]

        return self._fan_out(check, list(checks))

    def assign_roles_bulk(
        self, assignments: list[tuple[int, int, str]], *, assigned_by: str
    ) -> int:
        """Store (community_id, user_id, role) for many users; returns how many."""
        for position, (_, _, role) in enumerate(assignments):
            if role not in ROLES:
                raise ValidationError(
                    f"assignments[{position}].role must be one of {', '.join(ROLES)}",
                    field=f"assignments[{position}]",
                )

        def assign(part):
            with self.database.connection():
                for community_id, user_id, role in part:
                    self.directory.set_role(community_id, user_id, role, assigned_by)
            return [1] * len(part)

        return len(self._fan_out(assign, list(assignments)))

    def global_community_id(self) -> int:
        """The id of the global community every user belongs to (created once)."""
        with self.database.connection() as db:
            row = (
                db(db.communities.is_global == True)
                .select(  # noqa: E712
                    db.communities.id, limitby=(0, 1)
                )
                .first()
            )
            if row is not None:
                return row.id
            return int(db.communities.insert(name="global", is_global=True, config={}))

    def ensure_users_in_global_community_bulk(self, user_ids: list[int]) -> int:
        """Make every user a member of the global community; returns how many were added."""
        community_id = self.global_community_id()

        def ensure(part):
            added = []
            with self.database.connection() as db:
                members = db.community_memberships
                present = {
                    r.user_id
                    for r in db(
                        (members.community_id == community_id) & members.user_id.belongs(part)
                    ).select(members.user_id)
                }
                for user_id in part:
                    if user_id not in present:
                        members.insert(community_id=community_id, user_id=user_id, reputation=0)
                        added.append(user_id)
            return added

        return len(self._fan_out(ensure, list(user_ids)))
