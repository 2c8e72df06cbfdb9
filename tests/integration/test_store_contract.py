"""Contract tests for waddlebot.store: both backends must behave identically."""

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from waddlebot.store import (
    Admission,
    MemoryStore,
    Message,
    RedisStore,
    Store,
    StoreUnavailable,
    make_store,
)

pytestmark = pytest.mark.integration

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """Yield a key prefix unique to one test and delete its Redis keys afterwards."""
    prefix = f"waddlebot-test:store:{uuid.uuid4().hex}:"
    yield prefix
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    try:
        leftover = list(raw.scan_iter(match=f"{prefix}*"))
        if leftover:
            raw.delete(*leftover)
    finally:
        raw.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Yield each backend in turn, configured through the public factory."""
    if request.param == "memory":
        instance = make_store(redis_host=None, key_prefix="test:")
    else:
        prefix = request.getfixturevalue("redis_prefix")
        instance = make_store(redis_host=REDIS_HOST, redis_port=REDIS_PORT, key_prefix=prefix)
        if not instance.ping():
            instance.close()
            pytest.fail(f"Redis at {REDIS_HOST}:{REDIS_PORT} is not reachable")
    yield instance
    instance.close()


def test_backend_name_and_ping(store: Store, request: pytest.FixtureRequest) -> None:
    expected_class = MemoryStore if store.backend == "memory" else RedisStore
    assert store.backend == request.node.callspec.params["store"]
    assert isinstance(store, expected_class)
    assert store.ping() is True


def test_get_set_roundtrip(store: Store) -> None:
    payload = json.dumps({"user": "waddle", "emoji": "🐧", "n": [1, 2]})
    assert store.get("missing") is None
    assert store.set("json", payload) is True
    assert store.get("json") == payload
    assert store.set("json", "replaced") is True
    assert store.get("json") == "replaced"


def test_ttl_expiry(store: Store) -> None:
    store.set("short", "v", ttl=0.2)
    store.set("forever", "v")
    remaining = store.ttl("short")
    assert remaining is not None and 0 < remaining <= 0.2
    assert store.ttl("forever") is None
    assert store.ttl("missing") is None
    time.sleep(0.3)
    assert store.get("short") is None
    assert store.ttl("short") is None
    assert store.get("forever") == "v"


def test_set_without_ttl_clears_previous_expiry(store: Store) -> None:
    store.set("key", "a", ttl=5)
    store.set("key", "b")
    assert store.ttl("key") is None


def test_set_nx_only_when_absent(store: Store) -> None:
    assert store.set("lock", "first", nx=True) is True
    assert store.set("lock", "second", nx=True) is False
    assert store.get("lock") == "first"
    store.delete("lock")
    assert store.set("lock", "third", ttl=0.2, nx=True) is True
    time.sleep(0.3)
    assert store.set("lock", "after-expiry", nx=True) is True
    assert store.get("lock") == "after-expiry"


def test_delete_returns_number_removed(store: Store) -> None:
    store.set("a", "1")
    store.set("b", "2")
    store.push_recent("list", "x", max_len=5)
    assert store.delete("a", "b", "list", "missing") == 3
    assert store.delete("a") == 0
    assert store.delete() == 0
    assert store.get("a") is None


def test_incr_counts_and_applies_ttl_only_on_create(store: Store) -> None:
    assert store.incr("plain") == 1
    assert store.incr("plain", 5) == 6
    assert store.incr("plain", -2) == 4
    assert store.ttl("plain") is None

    assert store.incr("expiring", ttl=0.3) == 1
    first_ttl = store.ttl("expiring")
    assert first_ttl is not None and 0 < first_ttl <= 0.3
    assert store.incr("expiring", ttl=60) == 2
    later_ttl = store.ttl("expiring")
    assert later_ttl is not None and later_ttl <= first_ttl
    time.sleep(0.4)
    assert store.get("expiring") is None
    assert store.incr("expiring") == 1


def test_incr_rejects_non_integer(store: Store) -> None:
    store.set("word", "penguin")
    with pytest.raises(ValueError):
        store.incr("word")
    assert store.get("word") == "penguin"


def test_incr_is_atomic_across_threads(store: Store) -> None:
    threads_count, increments = 8, 200
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            for _ in range(increments):
                store.incr("shared")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get("shared") == str(threads_count * increments)


def test_hit_window_allows_limit_then_denies_until_window_slides(store: Store) -> None:
    limit, window = 3, 0.3
    results = [store.hit_window("rate", limit, window) for _ in range(limit)]
    assert [r.allowed for r in results] == [True] * limit
    assert [r.count for r in results] == [1, 2, 3]
    assert all(r.retry_after == 0 for r in results)

    denied = store.hit_window("rate", limit, window)
    assert denied.allowed is False
    assert denied.count == limit
    assert 0 < denied.retry_after <= window
    assert store.hit_window("rate", limit, window).count == limit  # denials are not recorded

    time.sleep(denied.retry_after + 0.05)
    again = store.hit_window("rate", limit, window)
    assert again.allowed is True
    assert again.retry_after == 0


def test_hit_window_is_a_sliding_log_not_fixed_buckets(store: Store) -> None:
    window = 0.5
    assert store.hit_window("slide", 2, window).allowed
    time.sleep(0.25)
    assert store.hit_window("slide", 2, window).allowed
    assert not store.hit_window("slide", 2, window).allowed
    time.sleep(0.3)  # only the first hit has left the window
    freed = store.hit_window("slide", 2, window)
    assert freed.allowed and freed.count == 2
    still_full = store.hit_window("slide", 2, window)
    assert not still_full.allowed
    assert 0 < still_full.retry_after < window


def test_push_recent_caps_and_orders_newest_first(store: Store) -> None:
    for number in range(1, 6):
        store.push_recent("events", str(number), max_len=3)
    assert store.recent("events", 10) == ["5", "4", "3"]
    assert store.recent("events", 2) == ["5", "4"]
    assert store.recent("events", 0) == []
    assert store.recent("missing", 5) == []


def test_push_recent_ttl_expires_list(store: Store) -> None:
    store.push_recent("replay", '{"type": "follow"}', max_len=10, ttl=0.2)
    assert store.recent("replay", 10) == ['{"type": "follow"}']
    remaining = store.ttl("replay")
    assert remaining is not None and 0 < remaining <= 0.2
    time.sleep(0.3)
    assert store.recent("replay", 10) == []


def test_publish_delivers_to_every_subscriber(store: Store) -> None:
    payload = json.dumps({"event": "raid", "viewers": 42})
    with store.subscribe("overlay") as first, store.subscribe("overlay", "alerts") as second:
        with store.subscribe("unrelated") as bystander:
            assert store.publish("overlay", payload) == 2
            assert first.get(timeout=2) == Message(channel="overlay", data=payload)
            assert second.get(timeout=2) == Message(channel="overlay", data=payload)

            assert store.publish("alerts", "ding") == 1
            assert second.get(timeout=2) == Message(channel="alerts", data="ding")

            started = time.monotonic()
            assert bystander.get(timeout=0.2) is None
            assert first.get(timeout=0) is None
            assert 0.15 <= time.monotonic() - started < 1.5

    assert store.publish("overlay", payload) == 0


def test_closed_subscription_returns_none(store: Store) -> None:
    subscription = store.subscribe("gone")
    subscription.close()
    subscription.close()
    assert store.publish("gone", "hello") == 0
    assert subscription.get(timeout=0.1) is None


def test_redis_applies_key_prefix(redis_prefix: str) -> None:
    store = RedisStore(REDIS_HOST, REDIS_PORT, key_prefix=redis_prefix)
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    try:
        store.set("visible", "yes")
        assert raw.get(f"{redis_prefix}visible") == "yes"
        assert store.get("visible") == "yes"
        assert store.delete("visible") == 1
        assert raw.exists(f"{redis_prefix}visible") == 0
    finally:
        raw.close()
        store.close()


def test_admit_many_sets_sessions_and_hits_windows_in_order(store: Store) -> None:
    admissions = [
        Admission("once:a", 60, "session:a", "entity-a", 30, (("w:1", 2, 60), ("w:2", 1, 60))),
        Admission(None, 60, "session:b", "entity-b", 30),
        Admission("once:c", 60, "session:c", "entity-c", 30, (("w:2", 1, 60),)),
    ]
    first, second, third = store.admit_many(admissions)
    assert first.fresh and [(w.allowed, w.count) for w in first.windows] == [(1, 1), (1, 1)]
    assert second.fresh and second.windows == ()
    # the third hits w:2 after the first did: over its limit of 1, with a wait to retry
    assert third.fresh and not third.windows[0].allowed and third.windows[0].count == 1
    assert 0 < third.windows[0].retry_after <= 60
    assert store.get("session:a") == "entity-a" and store.get("session:c") == "entity-c"
    assert 0 < store.ttl("session:b") <= 30
    assert store.get("once:a") == "1"


def test_admit_many_records_nothing_for_a_repeat(store: Store) -> None:
    [fresh] = store.admit_many([Admission("once:x", 60, "session:1", "e", 30, (("w", 5, 60),))])
    [repeat] = store.admit_many([Admission("once:x", 60, "session:2", "e", 30, (("w", 5, 60),))])
    assert fresh.fresh and fresh.windows[0].count == 1
    assert not repeat.fresh and repeat.windows == ()
    assert store.get("session:2") is None  # the repeat opened no session
    assert store.hit_window("w", 5, 60).count == 2  # and did not count in the window
    assert store.admit_many([]) == []


def test_admit_many_rejects_impossible_windows(store: Store) -> None:
    with pytest.raises(ValueError):
        store.admit_many([Admission(None, 60, "s", "e", 30, (("w", 0, 60),))])
    with pytest.raises(ValueError):
        store.admit_many([Admission(None, 60, "s", "e", 0)])


def test_admit_many_loads_its_script_again_after_a_flush(store: Store) -> None:
    if store.backend != "redis":
        pytest.skip("script cache is Redis's")
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        raw.script_flush()
    finally:
        raw.close()
    batch = [Admission(f"once:{n}", 60, f"session:{n}", "e", 30, (("w", 9, 60),)) for n in range(3)]
    assert [a.windows[0].count for a in store.admit_many(batch)] == [1, 2, 3]
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        raw.script_flush()
    finally:
        raw.close()
    [single] = store.admit_many([Admission("once:9", 60, "session:9", "e", 30)])
    assert single.fresh


def test_admit_many_survives_redis_closing_its_kept_connection(redis_prefix: str) -> None:
    store = make_store(redis_host=REDIS_HOST, redis_port=REDIS_PORT, key_prefix=redis_prefix)
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        [first] = store.admit_many([Admission("once:1", 60, "session:1", "e", 30)])
        # as after a Redis restart: the server closes the connection the store kept
        [kept] = store._kept
        host, port = kept._sock.getsockname()[:2]
        assert raw.client_kill(f"{host}:{port}")
        [second] = store.admit_many([Admission("once:2", 60, "session:2", "e", 30)])
        [repeat] = store.admit_many([Admission("once:2", 60, "session:3", "e", 30)])
    finally:
        raw.close()
        store.close()
    assert first.fresh and second.fresh and not repeat.fresh


def test_redis_unreachable_raises_store_unavailable() -> None:
    store = make_store(redis_host="127.0.0.1", redis_port=1, key_prefix="unused:")
    try:
        assert store.backend == "redis"
        assert store.ping() is False
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            store.get("anything")
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            store.hit_window("anything", 1, 1.0)
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            store.admit_many(
                [Admission("once", 60, "session", "e", 30), Admission(None, 1, "s", "e", 1)]
            )
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            store.subscribe("anything")
    finally:
        store.close()


def test_memory_store_expires_with_injected_clock_and_sweeps() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0], sweep_interval=10.0)
    store.set("a", "1", ttl=5)
    store.hit_window("w", 1, 5)
    store.push_recent("r", "x", max_len=2, ttl=5)
    assert store.ttl("a") == 5
    now[0] += 4
    assert store.get("a") == "1"
    assert not store.hit_window("w", 1, 5).allowed
    now[0] += 2
    assert store.get("a") is None
    assert store.hit_window("w", 1, 5).allowed
    now[0] += 30
    store.set("trigger-sweep", "1")
    assert set(store._entries) == {"trigger-sweep"}
