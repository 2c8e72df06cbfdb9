"""The router's cached role maps follow role changes made by any process.

Two ``Directory`` objects stand for two router workers sharing one database and one
store: a role set through one reaches the other's long-lived cache through the shared
``router:roles:version`` counter, within the check interval.
"""

from __future__ import annotations

import time

import pytest

from waddlebot.db import Database
from waddlebot.router_tables import ROLES_VERSION_KEY, define_router_tables
from waddlebot.store import MemoryStore
from waddlebot.testkit import app_module


def _identities():
    """``router_module.services.identities`` without running the app package."""
    return app_module("router_module.services.identities")


@pytest.fixture
def workers(tmp_path):
    database = Database(
        f"sqlite://{tmp_path / 'router.sqlite'}",
        definers=[define_router_tables],
        migrate=True,
        folder=str(tmp_path),
    )
    store = MemoryStore()
    identities = _identities()
    first, second = (identities.Directory(database, entity_ttl=600, store=store) for _ in range(2))
    for directory in (first, second):
        directory.roles_version.interval = 0.05
    with database.connection() as db:
        community = db.communities.insert(name="c", platform="console", config={})
        user = db.users.insert(display_name="nina")
    yield first, second, community, user, store
    database.close()


def test_a_role_set_by_one_worker_reaches_the_others_cache(workers):
    first, second, community, user, store = workers
    with first.database.connection():
        assert first.stored_role(community, user) == "member"  # cached for 10 minutes
        second.set_role(community, user, "moderator", "test")
    assert store.get(ROLES_VERSION_KEY) == "1"
    time.sleep(0.06)
    with first.database.connection():
        assert first.stored_role(community, user) == "moderator"


def test_without_a_bump_the_cached_map_stands(workers):
    """The counter is what invalidates: a direct write alone is not seen (until TTL)."""
    first, _second, community, user, _store = workers
    with first.database.connection() as db:
        assert first.stored_role(community, user) == "member"
        db.community_rbac.insert(community_id=community, user_id=user, role="admin")
    time.sleep(0.06)
    with first.database.connection():
        assert first.stored_role(community, user) == "member"
        first.roles_changed()
        time.sleep(0.06)
        assert first.stored_role(community, user) == "admin"


class _DownStore:
    def get(self, key):
        from waddlebot.store import StoreUnavailable

        raise StoreUnavailable("redis is down")

    incr = get


def test_shared_version_looks_once_per_interval_and_survives_a_store_outage():
    _identities()
    from router_module.services.cache import SharedVersion

    now = [0.0]
    store = MemoryStore()
    mine, theirs = (SharedVersion(store, "v", interval=1.0, clock=lambda: now[0]) for _ in "ab")
    assert not mine.moved()  # nothing bumped yet
    theirs.bump()
    assert not mine.moved()  # looked less than an interval ago
    now[0] = 1.5
    assert mine.moved()
    assert theirs.moved()  # a process sees its own bump too
    now[0] = 3.0
    assert not mine.moved()  # nothing new
    down = SharedVersion(_DownStore(), "v", clock=lambda: now[0])
    down.bump()  # no error: the caches' TTLs bound staleness meanwhile
    assert not down.moved()
