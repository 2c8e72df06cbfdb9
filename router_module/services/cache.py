"""A small thread-safe in-memory TTL cache for hot-path lookups."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class TTLCache:
    """LRU-bounded mapping whose entries expire after ``ttl`` seconds."""

    def __init__(self, ttl: float, max_items: int = 50_000, clock: Callable = time.monotonic):
        self.ttl = ttl
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default=None):
        """The cached value, or ``default`` when absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry[0] < now:
                if entry is not None:
                    del self._items[key]
                self.misses += 1
                return default
            self._items.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value) -> None:
        """Store ``value`` for ``ttl`` seconds, evicting the oldest beyond ``max_items``."""
        with self._lock:
            self._items[key] = (self._clock() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        """Forget one key."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Forget everything (after a change the cache cannot track key by key)."""
        with self._lock:
            self._items.clear()


class SharedVersion:
    """A change counter in the shared store that every router process watches.

    A process that changes something a cache holds calls :meth:`bump`; every process
    asks :meth:`moved` before using the cache and drops it when the answer is yes. The
    store is read at most once per ``interval`` seconds, so a change reaches every
    process within about that long. The store being down is not an error: nothing
    moves until it is back (the caches' own TTLs still bound staleness).
    """

    def __init__(self, store, key: str, *, interval: float = 1.0, clock=time.monotonic):
        from waddlebot.store import StoreUnavailable

        self.store = store
        self.key = key
        self.interval = interval
        self._clock = clock
        self._unavailable = StoreUnavailable
        self._seen: str | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def bump(self) -> None:
        """Record a change for every process (this one included)."""
        try:
            self.store.incr(self.key)
        except self._unavailable:
            pass

    def moved(self) -> bool:
        """Whether the counter changed since the last look (looks once per interval)."""
        now = self._clock()
        if now - self._checked < self.interval:
            return False
        with self._lock:
            if now - self._checked < self.interval:
                return False
            self._checked = now
            try:
                version = self.store.get(self.key)
            except self._unavailable:
                return False
            if version == self._seen:
                return False
            self._seen = version
            return True
