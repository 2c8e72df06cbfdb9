"""Coordination of collector containers (router_module/services/coordination.py).

Service level, on the real PostgreSQL primary and on SQLite (the embedded default):
the coordination functions are called directly with explicit ``now=`` values (a
controllable clock), each thread on its own connection (``with database.connection()
as db``). The PostgreSQL tests run in a database of their own on the test cluster
(created here, dropped afterwards), because other suites reset the shared
``waddlebot_test`` database while they run.

What must hold (spec "Coordination"; DESIGN §2): concurrent claimers never take the
same entity, live and higher-priority entities are claimed first, a claim runs out
after 30 minutes without heartbeat and a container that has not checked in for
6 minutes loses its claims, expired claims can be claimed again, release-offline
swaps offline entities for new ones, Discord/Slack claim whole servers, an entity past
the error threshold is skipped, and the table can be filled from ``servers``.
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from waddlebot.db import Database
from waddlebot.testkit import create_database, drop_database

pytestmark = pytest.mark.integration

ROUTER_DIR = Path(__file__).resolve().parents[2] / "router_module"
T0 = datetime.datetime(2030, 1, 1, 12, 0, 0)


def _load(name: str, path: Path):
    """Load a router module by file path (importing ``router_module`` starts the app)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


models = _load("wb_test_router_models", ROUTER_DIR / "models.py")
coordination = _load("wb_test_router_coordination", ROUTER_DIR / "services" / "coordination.py")


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def database(request, tmp_path_factory) -> Iterator[Database]:
    """The router tables on a private PostgreSQL database of the test cluster, or on a
    SQLite file (the embedded default: same functions, a lock instead of row locks)."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("coordination")
        database = Database(
            f"sqlite://{folder / 'coordination.sqlite'}",
            definers=[models.define_tables],
            migrate=True,
            pool_size=0,
            folder=str(folder),
        )
        try:
            yield database
        finally:
            database.close()
        return
    name = f"waddlebot_coord_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    # no pool: the 20 claimer threads' connections close when they finish (shared server)
    database = Database(url, definers=[models.define_tables], migrate=True, pool_size=0)
    try:
        yield database
    finally:
        database.close()
        drop_database(name)


@pytest.fixture
def db(database) -> Iterator:
    """A primary connection with an empty coordination table (and servers table)."""
    with database.connection() as conn:
        conn(conn.coordination.id > 0).delete()
        conn(conn.servers.id > 0).delete()
        conn.commit()
        yield conn


def _add(
    db,
    platform: str,
    server: str,
    channel: str,
    *,
    live: bool = False,
    priority: int = 100,
    viewers: int = 0,
) -> str:
    entity_id = f"{platform}:{server}:{channel}"
    db.coordination.insert(
        platform=platform,
        server_id=server,
        channel_id=channel,
        entity_id=entity_id,
        status="available",
        is_live=live,
        priority=priority,
        viewer_count=viewers,
        metadata={},
        config={},
    )
    return entity_id


def _twitch(db, count: int) -> list[str]:
    ids = [_add(db, "twitch", f"b{i:04d}", f"b{i:04d}") for i in range(count)]
    db.commit()
    return ids


def _ids(claims: list[dict]) -> set[str]:
    return {c["entity_id"] for c in claims}


def _owner(db, entity_id: str) -> str | None:
    db.commit()  # a fresh snapshot: other threads committed since
    return db(db.coordination.entity_id == entity_id).select().first().claimed_by


def _run_threads(count: int, target) -> list:
    """Run ``target(index)`` in ``count`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(10)
            results[index] = target(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


# -- concurrency ----------------------------------------------------------------------
def test_concurrent_claimers_never_double_claim(database, db):
    """20 containers claim 200 channels at once, then churn: no entity has two holders."""
    entities = set(_twitch(db, 200))
    max_claims = 10
    rounds = 4

    def claimer(index: int) -> list[tuple[set[str], set[str]]]:
        container = f"twitch-{index}"
        seen = []
        with database.connection() as conn:
            for _ in range(rounds):
                held = _ids(
                    coordination.claim(
                        conn, platform="twitch", container_id=container, max_claims=max_claims
                    )
                )
                # still ours just before we let go: nobody took them meanwhile
                conn.commit()
                still = {
                    r.entity_id
                    for r in conn(conn.coordination.claimed_by == container).select(
                        conn.coordination.entity_id
                    )
                }
                coordination.release(conn, container_id=container)
                conn.commit()
                seen.append((held, still))
        return seen

    results = _run_threads(20, claimer)
    for rounds_seen in results:
        for held, still in rounds_seen:
            assert len(held) <= max_claims
            assert held <= entities
            assert held == still, "a claim was taken away from its holder"

    # one last simultaneous round, kept: together they hold everything, each once
    def final(index: int) -> set[str]:
        with database.connection() as conn:
            return _ids(
                coordination.claim(
                    conn, platform="twitch", container_id=f"twitch-{index}", max_claims=max_claims
                )
            )

    held = _run_threads(20, final)
    claimed = [e for h in held for e in h]
    assert len(claimed) == len(set(claimed)), "an entity was claimed twice"
    assert all(len(h) <= max_claims for h in held)
    assert set(claimed) == entities  # 20 × 10 = 200: nothing left behind
    db.commit()
    for index, h in enumerate(held):
        rows = db(db.coordination.claimed_by == f"twitch-{index}").select()
        assert {r.entity_id for r in rows} == h
        assert all(r.status == "claimed" for r in rows)


def test_concurrent_discord_claimers_take_whole_servers(database, db):
    """20 Discord containers at once: each server's channels all go to one container."""
    servers = {f"g{s:03d}": [f"c{c}" for c in range(1 + s % 4)] for s in range(60)}
    for server, channels in servers.items():
        for channel in channels:
            _add(db, "discord", server, channel)
    db.commit()

    def claimer(index: int) -> list[dict]:
        with database.connection() as conn:
            return coordination.claim(
                conn, platform="discord", container_id=f"discord-{index}", max_claims=3
            )

    results = _run_threads(20, claimer)
    owners: dict[str, set[str]] = {}
    for index, claims in enumerate(results):
        assert len({c["server_id"] for c in claims}) <= 3
        for claim in claims:
            assert claim["claimed_by"] == f"discord-{index}"
            owners.setdefault(claim["server_id"], set()).add(claim["claimed_by"])
    assert len(owners) == 60  # 20 containers × 3 servers
    assert all(len(o) == 1 for o in owners.values()), owners
    db.commit()
    for server, channels in servers.items():
        rows = db(db.coordination.server_id == server).select()
        assert len({r.claimed_by for r in rows}) == 1, (server, [r.claimed_by for r in rows])
        assert len(rows) == len(channels)


# -- order ----------------------------------------------------------------------------
def test_live_and_higher_priority_first(db):
    _add(db, "twitch", "offline-p1", "offline-p1", priority=1)
    _add(db, "twitch", "live-p50-few", "live-p50-few", live=True, priority=50, viewers=3)
    _add(db, "twitch", "live-p50-many", "live-p50-many", live=True, priority=50, viewers=900)
    _add(db, "twitch", "live-p10", "live-p10", live=True, priority=10, viewers=1)
    _add(db, "twitch", "offline-p100", "offline-p100", priority=100, viewers=10_000)
    _add(db, "discord", "other", "platform", live=True, priority=0)
    db.commit()

    first = coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0)
    # live first; among live ones priority 10, then the most viewers at priority 50
    assert _ids(first) == {"twitch:live-p10:live-p10", "twitch:live-p50-many:live-p50-many"}
    second = coordination.claim(db, platform="twitch", container_id="b", max_claims=2, now=T0)
    assert _ids(second) == {"twitch:live-p50-few:live-p50-few", "twitch:offline-p1:offline-p1"}
    third = coordination.claim(db, platform="twitch", container_id="c", max_claims=2, now=T0)
    assert _ids(third) == {"twitch:offline-p100:offline-p100"}  # the only twitch one left
    assert _owner(db, "discord:other:platform") is None


def test_claim_tops_up_to_max_claims_and_is_idempotent(db):
    _twitch(db, 10)
    held = coordination.claim(db, platform="twitch", container_id="a", max_claims=3, now=T0)
    assert len(held) == 3
    again = coordination.claim(db, platform="twitch", container_id="a", max_claims=3, now=T0)
    assert _ids(again) == _ids(held)
    more = coordination.claim(db, platform="twitch", container_id="a", max_claims=5, now=T0)
    assert len(more) == 5 and _ids(held) < _ids(more)
    assert all(c["claim_expires"] == (T0 + coordination.CLAIM_TTL).isoformat() for c in more)


# -- expiry ---------------------------------------------------------------------------
def test_checkin_timeout_after_six_minutes_frees_claims(db):
    _twitch(db, 3)
    held = coordination.claim(db, platform="twitch", container_id="a", max_claims=3, now=T0)
    assert len(held) == 3

    just_before = T0 + datetime.timedelta(minutes=5, seconds=59)
    assert (
        coordination.claim(db, platform="twitch", container_id="b", max_claims=3, now=just_before)
        == []
    )
    after = T0 + datetime.timedelta(minutes=6, seconds=1)
    taken = coordination.claim(db, platform="twitch", container_id="b", max_claims=3, now=after)
    assert _ids(taken) == _ids(held)  # expired claims are claimable again
    assert all(_owner(db, e) == "b" for e in _ids(held))


def test_checkins_keep_claims_alive(db):
    _twitch(db, 2)
    held = coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0)
    for minutes in (5, 10, 15, 20, 25, 30, 35):
        answer = coordination.checkin(
            db, container_id="a", now=T0 + datetime.timedelta(minutes=minutes)
        )
        assert answer["renewed"] == 2
        assert _ids(answer["claims"]) == _ids(held)
    later = T0 + datetime.timedelta(minutes=40)  # 5 min after the last check-in
    assert (
        coordination.claim(db, platform="twitch", container_id="b", max_claims=2, now=later) == []
    )
    assert all(_owner(db, e) == "a" for e in _ids(held))


def test_late_checkin_finds_its_claims_gone(db):
    _twitch(db, 2)
    coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0)
    answer = coordination.checkin(db, container_id="a", now=T0 + datetime.timedelta(minutes=7))
    assert answer == {"renewed": 0, "claims": []}


def test_claim_expires_after_thirty_minutes_without_heartbeat(db):
    """The claim itself runs out at 30 min, even with a fresh check-in timestamp."""
    _twitch(db, 2)
    held = _ids(coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0))
    # the container's check-in time is recent, but nothing extended the claim itself
    db(db.coordination.claimed_by == "a").update(last_checkin=T0 + datetime.timedelta(minutes=29))
    db.commit()
    before = T0 + datetime.timedelta(minutes=29, seconds=59)
    assert (
        coordination.claim(db, platform="twitch", container_id="b", max_claims=2, now=before) == []
    )
    after = T0 + datetime.timedelta(minutes=30, seconds=1)
    assert (
        _ids(coordination.claim(db, platform="twitch", container_id="b", max_claims=2, now=after))
        == held
    )


def test_heartbeat_extends_the_claim(db):
    _twitch(db, 1)
    [entity] = _ids(
        coordination.claim(db, platform="twitch", container_id="a", max_claims=1, now=T0)
    )
    beat = T0 + datetime.timedelta(minutes=25)
    assert coordination.heartbeat(db, container_id="a", now=beat) == {"extended": 1}
    db(db.coordination.claimed_by == "a").update(last_checkin=beat + datetime.timedelta(minutes=20))
    db.commit()
    # past the original 30 minutes, within 30 minutes of the heartbeat: still held
    still = T0 + datetime.timedelta(minutes=45)
    assert (
        coordination.claim(db, platform="twitch", container_id="b", max_claims=1, now=still) == []
    )
    gone = beat + datetime.timedelta(minutes=30, seconds=1)
    assert _ids(
        coordination.claim(db, platform="twitch", container_id="b", max_claims=1, now=gone)
    ) == {entity}


# -- release ---------------------------------------------------------------------------
def test_release_offline_swaps_offline_entities_for_live_ones(db):
    offline = [_add(db, "twitch", f"off{i}", f"off{i}") for i in range(3)]
    live_held = _add(db, "twitch", "livekept", "livekept", live=True, priority=200)
    db.commit()
    held = coordination.claim(db, platform="twitch", container_id="a", max_claims=4, now=T0)
    assert _ids(held) == {*offline, live_held}
    # two channels nobody holds go live
    fresh = [_add(db, "twitch", f"new{i}", f"new{i}", live=True) for i in range(2)]
    db.commit()

    answer = coordination.release_offline(
        db, container_id="a", platform="twitch", max_claims=4, now=T0
    )
    assert set(answer["released"]) == set(offline)
    claimed = _ids(answer["claimed"])
    assert live_held in claimed  # a live channel is kept
    assert set(fresh) <= claimed  # the new live ones are taken
    assert len(claimed) == 4
    released_not_retaken = set(offline) - claimed
    assert len(released_not_retaken) == 2
    assert all(_owner(db, e) is None for e in released_not_retaken)


def test_release_some_or_all(db):
    _twitch(db, 4)
    held = sorted(
        _ids(coordination.claim(db, platform="twitch", container_id="a", max_claims=4, now=T0))
    )
    assert coordination.release(db, container_id="a", entity_ids=held[:1]) == 1
    assert coordination.release(db, container_id="b", entity_ids=held[1:]) == 0  # not b's
    assert coordination.release(db, container_id="a", entity_ids=[]) == 0  # none, not all
    assert coordination.release(db, container_id="a") == 3
    db.commit()
    assert all(_owner(db, e) is None for e in held)


# -- discord / slack: whole servers --------------------------------------------------
def test_discord_claims_whole_servers(db):
    for channel in ("general", "clips", "voice", "memes"):
        _add(db, "discord", "guild1", channel)
    for channel in ("general", "off-topic"):
        _add(db, "discord", "guild2", channel)
    _add(db, "discord", "guild3", "general")
    db.commit()

    first = coordination.claim(db, platform="discord", container_id="a", max_claims=1, now=T0)
    assert {c["server_id"] for c in first} == {"guild1"}
    assert len(first) == 4  # every channel of the server, counted as one claim
    second = coordination.claim(db, platform="discord", container_id="b", max_claims=2, now=T0)
    assert {c["server_id"] for c in second} == {"guild2", "guild3"}
    assert len(second) == 3
    # topping up counts servers, not channels
    again = coordination.claim(db, platform="discord", container_id="a", max_claims=1, now=T0)
    assert _ids(again) == _ids(first)


def test_slack_claims_whole_workspaces(db):
    for channel in ("C1", "C2", "C3"):
        _add(db, "slack", "T1", channel)
    _add(db, "slack", "T2", "C9")
    db.commit()
    held = coordination.claim(db, platform="slack", container_id="a", max_claims=1, now=T0)
    assert {(c["server_id"], c["channel_id"]) for c in held} == {
        ("T1", "C1"),
        ("T1", "C2"),
        ("T1", "C3"),
    }


# -- errors ---------------------------------------------------------------------------
def test_error_threshold_marks_entity_and_it_is_skipped(db):
    bad, good = _add(db, "twitch", "bad", "bad", live=True), _add(db, "twitch", "good", "good")
    db.commit()
    held = coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0)
    assert _ids(held) == {bad, good}
    for count in range(1, coordination.ERROR_THRESHOLD):
        answer = coordination.report_error(db, entity_id=bad, container_id="a", error="boom")
        assert answer["error_count"] == count and answer["status"] == "claimed"
    answer = coordination.report_error(db, entity_id=bad, container_id="a", error="boom")
    assert answer == {
        "entity_id": bad,
        "error_count": coordination.ERROR_THRESHOLD,
        "status": "error",
    }
    db.commit()
    assert _owner(db, bad) is None
    coordination.release(db, container_id="a")
    db.commit()
    # a live entity is normally first; in error it is skipped by everyone
    for container in ("a", "b"):
        held = coordination.claim(db, platform="twitch", container_id=container, max_claims=2)
        assert bad not in _ids(held)
    row = db(db.coordination.entity_id == bad).select().first()
    assert row.status == "error" and row.claimed_by is None
    assert coordination.stats(db)["errored"] == 1


def test_errored_channel_is_not_claimed_with_its_server(db):
    """Whole-server claims leave a channel in error alone."""
    for channel in ("general", "broken", "clips"):
        _add(db, "discord", "guild", channel)
    db.commit()
    for _ in range(coordination.ERROR_THRESHOLD):
        coordination.report_error(
            db, entity_id="discord:guild:broken", container_id=None, error="403 from Discord"
        )
    db.commit()
    held = coordination.claim(db, platform="discord", container_id="a", max_claims=1, now=T0)
    assert {c["channel_id"] for c in held} == {"general", "clips"}
    row = db(db.coordination.entity_id == "discord:guild:broken").select().first()
    assert row.status == "error" and row.claimed_by is None


def test_unknown_entity_status_and_error_are_not_found(db):
    from waddlebot.web import NotFound

    with pytest.raises(NotFound) as raised:
        coordination.update_status(db, entity_id="twitch:nope:nope", is_live=True)
    assert raised.value.field == "entity_id"
    with pytest.raises(NotFound):
        coordination.report_error(db, entity_id="twitch:nope:nope", container_id=None, error="x")


# -- status / populate / stats ----------------------------------------------------------
def test_status_updates_live_since(db):
    entity = _add(db, "twitch", "s", "s")
    db.commit()
    view = coordination.update_status(db, entity_id=entity, is_live=True, viewer_count=42, now=T0)
    assert view["is_live"] is True and view["viewer_count"] == 42
    row = db(db.coordination.entity_id == entity).select().first()
    assert row.live_since == T0 and row.last_activity == T0
    coordination.update_status(db, entity_id=entity, is_live=False, now=T0)
    row = db(db.coordination.entity_id == entity).select().first()
    assert row.live_since is None and row.is_live is False and row.viewer_count == 42


def test_populate_from_servers(db):
    rows = [
        ("twitch", "111", "111", True),
        ("discord", "g1", "c1", True),
        ("discord", "g1", "c2", True),
        ("slack", "T1", "C1", False),  # inactive: not coordinated
    ]
    for platform, server, channel, active in rows:
        db.servers.insert(
            platform=platform, server_id=server, channel=channel, is_active=active, config={}
        )
    _add(db, "twitch", "111", "111", priority=5)  # already coordinated: kept as is
    db.commit()

    assert coordination.populate(db, platform="discord") == {"created": 2, "total": 3}
    assert coordination.populate(db) == {"created": 0, "total": 3}
    db.commit()
    entities = {r.entity_id: r for r in db(db.coordination.id > 0).select()}
    assert set(entities) == {"twitch:111:111", "discord:g1:c1", "discord:g1:c2"}
    assert entities["twitch:111:111"].priority == 5
    assert entities["discord:g1:c2"].status == "available"
    assert entities["discord:g1:c2"].claimed_by is None
    # idempotent, and the new rows are claimable
    assert coordination.populate(db) == {"created": 0, "total": 3}
    held = coordination.claim(db, platform="discord", container_id="a", max_claims=1, now=T0)
    assert _ids(held) == {"discord:g1:c1", "discord:g1:c2"}


def test_stats(db):
    _twitch(db, 3)
    _add(db, "discord", "g", "c", live=True)
    db.commit()
    coordination.claim(db, platform="twitch", container_id="a", max_claims=2, now=T0)
    coordination.claim(db, platform="discord", container_id="b", max_claims=1, now=T0)
    stats = coordination.stats(db)
    assert stats["by_platform"] == {
        "twitch": {"claimed": 2, "available": 1},
        "discord": {"claimed": 1},
    }
    assert stats["live"] == 1 and stats["claimed"] == 3 and stats["containers"] == ["a", "b"]
    assert stats["errored"] == 0
