"""Shared key/value, counter, rate-window, recent-list and pub/sub store.

Every WaddleBot app talks to shared ephemeral state through the :class:`Store`
interface defined here. Two interchangeable backends implement it:

* :class:`RedisStore` - backed by Redis via redis-py. State is shared by every
  process pointed at the same server, and multi-step operations (counters with
  expiry, sliding rate windows) run as Lua scripts so they are atomic across
  processes. Connection and timeout failures surface as :class:`StoreUnavailable`
  and the client reconnects on its own once Redis is reachable again.
* :class:`MemoryStore` - an in-process, thread-safe implementation used when no
  Redis is configured (single-process deployments, development, tests). Expiry
  is honoured lazily on access and by a periodic sweep so memory stays bounded.

All keys, values, channels and messages are ``str``. A ``key_prefix`` given to
either backend is prepended to every key and channel, so several deployments
(or test runs) can share one Redis without colliding. Use :func:`make_store` to
pick the backend from configuration.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Self

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .ids import new_id

__all__ = [
    "MemoryStore",
    "Admission",
    "Admitted",
    "Message",
    "RedisStore",
    "Store",
    "StoreUnavailable",
    "Subscription",
    "WindowResult",
    "make_store",
]


class StoreUnavailable(Exception):
    """Raised when the store backend cannot be reached or timed out."""


@dataclass(frozen=True, slots=True)
class WindowResult:
    """Outcome of a sliding-window rate check."""

    allowed: bool
    count: int
    retry_after: float


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`Store.admit_many` does for one event, all or (for a repeat) nothing.

    ``once_key`` (if any) is set only if absent, for ``once_ttl`` seconds; when it was
    already there the event is a repeat and nothing else happens. Otherwise
    ``session_key`` is set to ``session_value`` for ``session_ttl`` seconds and one hit
    is recorded in each of ``windows`` (``(key, limit, window seconds)``, as
    :meth:`Store.hit_window`).
    """

    once_key: str | None
    once_ttl: float
    session_key: str
    session_value: str
    session_ttl: float
    windows: tuple[tuple[str, int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Admitted:
    """The outcome of one :class:`Admission`: a repeat (``fresh`` false, nothing done),
    or the session set and one :class:`WindowResult` per window, in order."""

    fresh: bool
    windows: tuple[WindowResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A pub/sub message received on ``channel``."""

    channel: str
    data: str


def _validate_ttl(ttl: float | None) -> None:
    """Reject non-positive expiry times."""
    if ttl is not None and ttl <= 0:
        raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")


def _validate_window(limit: int, window: float) -> None:
    """Reject rate windows that could never allow a hit."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit!r}")
    if window <= 0:
        raise ValueError(f"window must be positive seconds, got {window!r}")


def _validate_admission(admission: Admission) -> None:
    """Reject an admission whose ttls or windows could not work."""
    _validate_ttl(admission.once_ttl)
    _validate_ttl(admission.session_ttl)
    for _key, limit, window in admission.windows:
        _validate_window(limit, window)


def _validate_max_len(max_len: int) -> None:
    """Reject list caps that would keep nothing."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len!r}")


def _to_millis(seconds: float) -> int:
    """Convert positive seconds to whole milliseconds, never rounding down to zero."""
    return max(1, round(seconds * 1000))


class Subscription(ABC):
    """A live subscription to one or more channels; consume from a single thread."""

    @abstractmethod
    def get(self, timeout: float) -> Message | None:
        """Wait up to ``timeout`` seconds for the next message; None on timeout."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving messages and release resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Store(ABC):
    """Interface shared by the Redis and in-memory backends."""

    backend: str

    @abstractmethod
    def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent."""

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (optionally only if absent) with an optional ttl; return if set."""

    def admit_many(self, admissions: list[Admission]) -> list[Admitted]:
        """Carry out several :class:`Admission` s in one round trip; one result each.

        A repeat records nothing. On Redis each admission is one script run (atomic);
        in process each step is atomic under the store's lock.
        """
        for admission in admissions:
            _validate_admission(admission)
        return [self._admit_one(admission) for admission in admissions]

    def _admit_one(self, admission: Admission) -> Admitted:
        if admission.once_key is not None and not self.set(
            admission.once_key, "1", admission.once_ttl, nx=True
        ):
            return Admitted(False)
        self.set(admission.session_key, admission.session_value, admission.session_ttl)
        return Admitted(True, tuple(self.hit_window(*window) for window in admission.windows))

    @abstractmethod
    def delete(self, *keys: str) -> int:
        """Remove ``keys`` and return how many existed."""

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Return seconds until ``key`` expires, or None if absent or persistent."""

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount``; ``ttl`` applies only when this call creates the key."""

    @abstractmethod
    def hit_window(self, key: str, limit: int, window: float) -> WindowResult:
        """Record a hit if fewer than ``limit`` hits fall in the last ``window`` seconds."""

    @abstractmethod
    def push_recent(self, key: str, value: str, max_len: int, ttl: float | None = None) -> None:
        """Prepend ``value`` to a list capped at ``max_len`` entries (newest first)."""

    @abstractmethod
    def recent(self, key: str, count: int) -> list[str]:
        """Return up to ``count`` most recent list entries, newest first."""

    @abstractmethod
    def publish(self, channel: str, message: str) -> int:
        """Send ``message`` to ``channel``; return how many subscribers received it."""

    @abstractmethod
    def subscribe(self, *channels: str) -> Subscription:
        """Subscribe to ``channels``; messages published after this returns are delivered."""

    @abstractmethod
    def ping(self) -> bool:
        """Return True if the backend is reachable; never raises."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and other resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- Redis backend

# Sliding log on a sorted set scored by Redis server time in milliseconds, so
# every process shares one clock: one hit on one window, its {allowed, count,
# retry_after_ms} appended to ``out``. Shared by _HIT_WINDOW_LUA and _ADMIT_LUA.
_WINDOW_HIT_LUA = """
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
end
local function hit(key, limit, window_ms, now, member, out)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
  local count = redis.call('ZCARD', key)
  if count < limit then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window_ms))
    out[#out + 1] = 1
    out[#out + 1] = count + 1
    out[#out + 1] = '0'
  else
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    out[#out + 1] = 0
    out[#out + 1] = count
    out[#out + 1] = tostring(tonumber(oldest[2]) + window_ms - now)
  end
end
"""

# Store.hit_window: KEYS = the window; ARGV = limit, window ms, member.
_HIT_WINDOW_LUA = (
    _WINDOW_HIT_LUA
    + """
local out = {}
hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now_ms(), ARGV[3], out)
return out
"""
)

# One event's admission (Store.admit_many): KEYS = session key, [once key], window
# keys; ARGV = has-once flag, once ttl ms, session value, session ttl ms, member, then
# limit and window ms per window. A repeat (once key present) changes nothing and
# returns {0}; otherwise {1, then allowed, count, retry_ms per window}, each window
# as _HIT_WINDOW_LUA.
_ADMIT_LUA = (
    _WINDOW_HIT_LUA
    + """
local first = 2
if ARGV[1] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'PX', ARGV[2], 'NX') then
    return {0}
  end
  first = 3
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
local out = {1}
if #KEYS < first then
  return out
end
local now = now_ms()
for i = first, #KEYS do
  local at = 6 + 2 * (i - first)
  hit(KEYS[i], tonumber(ARGV[at]), tonumber(ARGV[at + 1]), now, ARGV[5], out)
end
return out
"""
)

# INCRBY that sets an expiry only when the key did not exist before the call.
_INCR_WITH_TTL_LUA = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

_SOCKET_TIMEOUT = 1.0
_HEALTH_CHECK_INTERVAL = 30
_POOL_SIZE = 50
_POOL_WAIT_TIMEOUT = 5.0
_SUBSCRIBE_CONFIRM_TIMEOUT = 2.0


def _window_result(allowed, count, retry_ms) -> WindowResult:
    """A WindowResult from one window's three values in a script's reply."""
    return WindowResult(
        allowed=bool(int(allowed)),
        count=int(count),
        retry_after=max(0.0, float(retry_ms) / 1000),
    )


def _admitted(answer: list) -> Admitted:
    """An Admitted from the admission script's reply."""
    if not int(answer[0]):
        return Admitted(False)
    windows = tuple(_window_result(*answer[i : i + 3]) for i in range(1, len(answer), 3))
    return Admitted(True, windows)


class _RedisSubscription(Subscription):
    """Subscription backed by a redis-py PubSub on a dedicated connection."""

    def __init__(self, store: RedisStore, pubsub: redis.client.PubSub) -> None:
        self._store = store
        self._pubsub = pubsub
        self._pending: deque[Message] = deque()
        self._closed = False

    def wait_until_subscribed(self, channel_count: int, timeout: float) -> None:
        """Block until Redis confirms ``channel_count`` subscriptions."""
        deadline = time.monotonic() + timeout
        confirmed = 0
        while confirmed < channel_count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(
                    f"Redis at {self._store.address} did not confirm subscription in time"
                )
            with self._store._translated_errors():
                raw = self._pubsub.get_message(timeout=remaining)
            if raw is None:
                continue
            if raw["type"] == "subscribe":
                confirmed += 1
            elif raw["type"] == "message":
                self._pending.append(self._to_message(raw))

    def get(self, timeout: float) -> Message | None:
        """Wait up to ``timeout`` seconds for the next message; None on timeout."""
        if self._closed:
            return None
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            with self._store._translated_errors():
                raw = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if raw is not None and raw["type"] == "message":
                return self._to_message(raw)
            if remaining <= 0:
                return None

    def close(self) -> None:
        """Unsubscribe and return the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pubsub.close()
        except redis.exceptions.RedisError:
            pass

    def _to_message(self, raw: dict) -> Message:
        """Convert a raw redis-py message into a :class:`Message` without the key prefix."""
        return Message(channel=self._store._unprefixed(raw["channel"]), data=raw["data"])


class RedisStore(Store):
    """Store backed by Redis; safe to share between threads."""

    backend = "redis"

    def __init__(
        self,
        host: str,
        port: int = 6379,
        password: str | None = None,
        db: int = 0,
        key_prefix: str = "",
    ) -> None:
        self.address = f"{host}:{port}"
        self._prefix = key_prefix
        connection_options = {
            "host": host,
            "port": port,
            "password": password,
            "db": db,
            "decode_responses": True,
            "socket_timeout": _SOCKET_TIMEOUT,
            "socket_connect_timeout": _SOCKET_TIMEOUT,
            "health_check_interval": _HEALTH_CHECK_INTERVAL,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        }
        self._pool = redis.BlockingConnectionPool(
            max_connections=_POOL_SIZE, timeout=_POOL_WAIT_TIMEOUT, **connection_options
        )
        # Subscriptions hold a connection for their whole life, so they get their own
        # pool and can never starve command traffic.
        self._pubsub_pool = redis.ConnectionPool(**connection_options)
        # the hot path's own kept connections (see _call_kept)
        self._connection_options = connection_options
        self._kept: deque[redis.Connection] = deque()
        self._client = redis.Redis(connection_pool=self._pool)
        self._pubsub_client = redis.Redis(connection_pool=self._pubsub_pool)
        self._hit_window_script = self._client.register_script(_HIT_WINDOW_LUA)
        self._incr_with_ttl_script = self._client.register_script(_INCR_WITH_TTL_LUA)
        self._admit_script = self._client.register_script(_ADMIT_LUA)

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """Re-raise redis-py errors as StoreUnavailable (connectivity) or ValueError (misuse)."""
        try:
            yield
        except (redis.exceptions.ReadOnlyError, redis.exceptions.BusyLoadingError) as exc:
            raise StoreUnavailable(f"Redis at {self.address} cannot serve: {exc}") from exc
        except (redis.exceptions.ResponseError, redis.exceptions.DataError) as exc:
            raise ValueError(f"Redis at {self.address} rejected the command: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self.address} is unavailable: {exc}") from exc

    def _unprefixed(self, name: str) -> str:
        """Strip the key prefix from a key or channel name."""
        return name[len(self._prefix) :] if name.startswith(self._prefix) else name

    def _key(self, key: str) -> str:
        """Apply the key prefix."""
        return self._prefix + key

    def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent."""
        with self._translated_errors():
            return self._client.get(self._key(key))

    def set(self, key: str, value: str, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (optionally only if absent) with an optional ttl; return if set."""
        _validate_ttl(ttl)
        expiry_ms = _to_millis(ttl) if ttl is not None else None
        with self._translated_errors():
            return bool(self._client.set(self._key(key), value, px=expiry_ms, nx=nx))

    def admit_many(self, admissions: list[Admission]) -> list[Admitted]:
        """Several admissions, each one script run, all in one round trip."""
        if not admissions:
            return []
        calls = []
        for admission in admissions:
            _validate_admission(admission)
            keys = [self._key(admission.session_key)]
            args: list = [
                "0" if admission.once_key is None else "1",
                _to_millis(admission.once_ttl),
                admission.session_value,
                _to_millis(admission.session_ttl),
                new_id(),
            ]
            if admission.once_key is not None:
                keys.append(self._key(admission.once_key))
            for key, limit, window in admission.windows:
                keys.append(self._key(key))
                args.extend((limit, window * 1000))
            calls.append((keys, args))
        with self._translated_errors():
            if len(calls) == 1:
                raw = [self._evalsha_kept(self._admit_script, *calls[0])]
            else:
                raw = self._evalsha_many(self._admit_script, calls)
        return [_admitted(answer) for answer in raw]

    def _evalsha_kept(self, script, keys: list, args: list):
        """``EVALSHA`` on a kept connection, loading the script if Redis lost it."""
        try:
            return self._call_kept("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.sha = self._client.script_load(script.script)
            return self._call_kept("EVALSHA", script.sha, len(keys), *keys, *args)

    def _call_kept(self, *command):
        """One command on a connection kept for the per-event hot path.

        redis-py's client (pool hand-out with a stale-data check, retry wrapper,
        command and script objects) spent more CPU than the round trip itself; this
        sends on a connection of its own and reads the reply. A kept connection the
        server has closed (Redis restarted) is dropped and the command sent once more
        on a new one; a timeout is not retried (the command may have run).
        """
        try:
            connection = self._kept.pop()
        except IndexError:
            return self._call_on(redis.Connection(**self._connection_options), command)
        try:
            return self._call_on(connection, command)
        except redis.exceptions.TimeoutError:
            raise
        except redis.exceptions.ConnectionError:
            return self._call_on(redis.Connection(**self._connection_options), command)

    def _call_on(self, connection: redis.Connection, command: tuple):
        try:
            connection.send_command(*command)
            reply = connection.read_response()
        except redis.exceptions.ResponseError:
            self._keep(connection)  # the error reply was read whole: the connection is fine
            raise
        except BaseException:
            connection.disconnect()
            raise
        self._keep(connection)
        return reply

    def _keep(self, connection: redis.Connection) -> None:
        if len(self._kept) < _POOL_SIZE:
            self._kept.append(connection)
        else:
            connection.disconnect()

    def _evalsha_many(self, script, calls: list[tuple[list, list]]) -> list:
        """Run ``script`` once per (keys, args) in one pipeline, loading it if Redis lost it.

        redis-py's pipeline asks ``SCRIPT EXISTS`` before every execute that runs a
        script (a second round trip); this sends ``EVALSHA`` and loads the script
        only when Redis answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``).
        """

        def run() -> list:
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)

        answers = run()
        if any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
            script.sha = self._client.script_load(script.script)
            answers = run()
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def delete(self, *keys: str) -> int:
        """Remove ``keys`` and return how many existed."""
        if not keys:
            return 0
        with self._translated_errors():
            return int(self._client.delete(*(self._key(key) for key in keys)))

    def ttl(self, key: str) -> float | None:
        """Return seconds until ``key`` expires, or None if absent or persistent."""
        with self._translated_errors():
            remaining_ms = self._client.pttl(self._key(key))
        return None if remaining_ms < 0 else remaining_ms / 1000

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount``; ``ttl`` applies only when this call creates the key."""
        _validate_ttl(ttl)
        with self._translated_errors():
            if ttl is None:
                return int(self._client.incrby(self._key(key), amount))
            return int(
                self._incr_with_ttl_script(keys=[self._key(key)], args=[amount, _to_millis(ttl)])
            )

    def hit_window(self, key: str, limit: int, window: float) -> WindowResult:
        """Record a hit if fewer than ``limit`` hits fall in the last ``window`` seconds."""
        _validate_window(limit, window)
        with self._translated_errors():
            answer = self._hit_window_script(
                keys=[self._key(key)], args=[limit, window * 1000, new_id()]
            )
        return _window_result(*answer)

    def push_recent(self, key: str, value: str, max_len: int, ttl: float | None = None) -> None:
        """Prepend ``value`` to a list capped at ``max_len`` entries (newest first)."""
        _validate_max_len(max_len)
        _validate_ttl(ttl)
        name = self._key(key)
        with self._translated_errors():
            pipeline = self._client.pipeline(transaction=True)
            pipeline.lpush(name, value)
            pipeline.ltrim(name, 0, max_len - 1)
            if ttl is not None:
                pipeline.pexpire(name, _to_millis(ttl))
            pipeline.execute()

    def recent(self, key: str, count: int) -> list[str]:
        """Return up to ``count`` most recent list entries, newest first."""
        if count < 1:
            return []
        with self._translated_errors():
            return list(self._client.lrange(self._key(key), 0, count - 1))

    def publish(self, channel: str, message: str) -> int:
        """Send ``message`` to ``channel``; return how many subscribers received it."""
        with self._translated_errors():
            return int(self._client.publish(self._key(channel), message))

    def subscribe(self, *channels: str) -> Subscription:
        """Subscribe to ``channels``; messages published after this returns are delivered."""
        if not channels:
            raise ValueError("subscribe() needs at least one channel")
        pubsub = self._pubsub_client.pubsub()
        subscription = _RedisSubscription(self, pubsub)
        try:
            with self._translated_errors():
                pubsub.subscribe(*(self._key(channel) for channel in channels))
            subscription.wait_until_subscribed(len(set(channels)), _SUBSCRIBE_CONFIRM_TIMEOUT)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def ping(self) -> bool:
        """Return True if Redis answers PING; never raises."""
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        """Close all pooled connections."""
        self._client.close()
        self._pool.disconnect()
        self._pubsub_pool.disconnect()
        while self._kept:
            self._kept.pop().disconnect()


# -------------------------------------------------------------------------- memory backend

_STRING = "string"
_LIST = "list"
_WINDOW = "window"


@dataclass(slots=True)
class _Entry:
    """One stored value with its kind and optional absolute expiry (clock seconds)."""

    kind: str
    value: str | deque
    expires_at: float | None = None


def _parse_counter(key: str, value: str) -> int:
    """Parse a stored counter, rejecting anything that is not a canonical integer."""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or str(number) != value:
        raise ValueError(f"value at {key!r} is not an integer: {value!r}")
    return number


class _MemorySubscription(Subscription):
    """Subscription fed by MemoryStore.publish through a private queue."""

    def __init__(self, store: MemoryStore, channels: tuple[str, ...]) -> None:
        self._store = store
        self.channels = channels
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._closed = False

    def get(self, timeout: float) -> Message | None:
        """Wait up to ``timeout`` seconds for the next message; None on timeout."""
        if self._closed:
            return None
        try:
            return self.inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop receiving messages; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._store._unsubscribe(self)


class MemoryStore(Store):
    """In-process Store for single-process use; thread-safe, state lost on exit."""

    backend = "memory"

    def __init__(
        self,
        key_prefix: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 5.0,
    ) -> None:
        self._prefix = key_prefix
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._next_sweep = clock() + sweep_interval
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._subscribers: dict[str, list[_MemorySubscription]] = {}

    def _key(self, key: str) -> str:
        """Apply the key prefix."""
        return self._prefix + key

    def _live_entry(self, name: str, now: float) -> _Entry | None:
        """Return the unexpired entry at ``name``, dropping it if expired; caller holds lock."""
        entry = self._entries.get(name)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._entries[name]
            return None
        return entry

    def _typed_entry(self, name: str, kind: str, now: float) -> _Entry | None:
        """Return the live entry at ``name`` after checking it holds ``kind``; caller holds lock."""
        entry = self._live_entry(name, now)
        if entry is not None and entry.kind != kind:
            raise ValueError(f"key {name!r} holds a {entry.kind}, not a {kind}")
        return entry

    def _maybe_sweep(self, now: float) -> None:
        """Drop all expired entries at most once per sweep interval; caller holds lock."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval
        expired = [
            name
            for name, entry in self._entries.items()
            if entry.expires_at is not None and entry.expires_at <= now
        ]
        for name in expired:
            del self._entries[name]

    def _expiry(self, ttl: float | None, now: float) -> float | None:
        """Turn a relative ttl into an absolute clock deadline."""
        return None if ttl is None else now + ttl

    def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent."""
        with self._lock:
            entry = self._typed_entry(self._key(key), _STRING, self._clock())
            return None if entry is None else entry.value

    def set(self, key: str, value: str, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (optionally only if absent) with an optional ttl; return if set."""
        _validate_ttl(ttl)
        name = self._key(key)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            if nx and self._live_entry(name, now) is not None:
                return False
            self._entries[name] = _Entry(_STRING, value, self._expiry(ttl, now))
            return True

    def delete(self, *keys: str) -> int:
        """Remove ``keys`` and return how many existed."""
        removed = 0
        with self._lock:
            now = self._clock()
            for name in dict.fromkeys(self._key(key) for key in keys):
                if self._live_entry(name, now) is not None:
                    del self._entries[name]
                    removed += 1
        return removed

    def ttl(self, key: str) -> float | None:
        """Return seconds until ``key`` expires, or None if absent or persistent."""
        with self._lock:
            now = self._clock()
            entry = self._live_entry(self._key(key), now)
            if entry is None or entry.expires_at is None:
                return None
            return entry.expires_at - now

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount``; ``ttl`` applies only when this call creates the key."""
        _validate_ttl(ttl)
        name = self._key(key)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            entry = self._typed_entry(name, _STRING, now)
            if entry is None:
                self._entries[name] = _Entry(_STRING, str(amount), self._expiry(ttl, now))
                return amount
            total = _parse_counter(name, entry.value) + amount
            entry.value = str(total)
            return total

    def hit_window(self, key: str, limit: int, window: float) -> WindowResult:
        """Record a hit if fewer than ``limit`` hits fall in the last ``window`` seconds."""
        _validate_window(limit, window)
        name = self._key(key)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            entry = self._typed_entry(name, _WINDOW, now)
            if entry is None:
                entry = _Entry(_WINDOW, deque())
                self._entries[name] = entry
            hits: deque[float] = entry.value
            cutoff = now - window
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                entry.expires_at = now + window
                return WindowResult(allowed=True, count=len(hits), retry_after=0.0)
            return WindowResult(
                allowed=False, count=len(hits), retry_after=max(0.0, hits[0] + window - now)
            )

    def push_recent(self, key: str, value: str, max_len: int, ttl: float | None = None) -> None:
        """Prepend ``value`` to a list capped at ``max_len`` entries (newest first)."""
        _validate_max_len(max_len)
        _validate_ttl(ttl)
        name = self._key(key)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            entry = self._typed_entry(name, _LIST, now)
            if entry is None:
                entry = _Entry(_LIST, deque())
                self._entries[name] = entry
            items: deque[str] = entry.value
            items.appendleft(value)
            while len(items) > max_len:
                items.pop()
            if ttl is not None:
                entry.expires_at = now + ttl

    def recent(self, key: str, count: int) -> list[str]:
        """Return up to ``count`` most recent list entries, newest first."""
        if count < 1:
            return []
        with self._lock:
            entry = self._typed_entry(self._key(key), _LIST, self._clock())
            if entry is None:
                return []
            return list(islice(entry.value, count))

    def publish(self, channel: str, message: str) -> int:
        """Send ``message`` to every subscriber of ``channel``; return how many got it."""
        with self._lock:
            receivers = list(self._subscribers.get(self._key(channel), ()))
        for subscription in receivers:
            subscription.inbox.put(Message(channel=channel, data=message))
        return len(receivers)

    def subscribe(self, *channels: str) -> Subscription:
        """Subscribe to ``channels``; messages published after this returns are delivered."""
        if not channels:
            raise ValueError("subscribe() needs at least one channel")
        names = tuple(dict.fromkeys(self._key(channel) for channel in channels))
        subscription = _MemorySubscription(self, names)
        with self._lock:
            for name in names:
                self._subscribers.setdefault(name, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _MemorySubscription) -> None:
        """Detach ``subscription`` from all of its channels."""
        with self._lock:
            for name in subscription.channels:
                listeners = self._subscribers.get(name, [])
                if subscription in listeners:
                    listeners.remove(subscription)
                if not listeners:
                    self._subscribers.pop(name, None)

    def ping(self) -> bool:
        """Always True: the in-process store is always reachable."""
        return True

    def close(self) -> None:
        """Drop all stored data and detach subscribers."""
        with self._lock:
            self._entries.clear()
            self._subscribers.clear()


def make_store(
    *,
    redis_host: str | None,
    redis_port: int = 6379,
    redis_password: str | None = None,
    redis_db: int = 0,
    key_prefix: str = "",
) -> Store:
    """Return a RedisStore when ``redis_host`` is set, otherwise a MemoryStore."""
    if redis_host:
        return RedisStore(
            host=redis_host,
            port=redis_port,
            password=redis_password,
            db=redis_db,
            key_prefix=key_prefix,
        )
    return MemoryStore(key_prefix=key_prefix)
