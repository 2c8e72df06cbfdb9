"""Shoutout cooldowns, kept in the shared store so every replica sees the same ones.

Twitch allows one ``/shoutout`` per channel every :data:`HELIX_GLOBAL_COOLDOWN`
seconds and one per channel and target every :data:`HELIX_TARGET_COOLDOWN` seconds;
automatic shoutouts on follow/subscription/raid wait ``SHOUTOUT_AUTO_COOLDOWN`` per
target user. Each cooldown is a store key holding the time it started, with a TTL so
it cleans itself up; the start time (not the TTL) decides, so a test can move the
clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from waddlebot.store import Store

HELIX_GLOBAL_COOLDOWN = 120
HELIX_TARGET_COOLDOWN = 3600


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """Whether a shoutout may go out now; otherwise which cooldown blocks it and how long."""

    allowed: bool
    blocked_by: str | None = None
    remaining: float = 0.0


class Cooldowns:
    """Claim and release cooldown windows in the store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def remaining(self, key: str, period: float) -> float:
        """Seconds left on the cooldown at ``key`` (0 when it is over or never started)."""
        raw = self.store.get(key)
        if raw is None:
            return 0.0
        try:
            started = float(raw)
        except ValueError:
            return 0.0
        return max(0.0, period - (self.clock() - started))

    def claim(self, key: str, period: float) -> bool:
        """Start the cooldown at ``key`` unless one is running; True when this call started it."""
        now = self.clock()
        if self.store.set(key, repr(now), ttl=period, nx=True):
            return True
        if self.remaining(key, period) > 0:
            return False
        # the clock says the previous window is over even if its key has not expired yet
        self.store.set(key, repr(now), ttl=period)
        return True

    def release(self, *keys: str) -> None:
        """Forget cooldowns (the shoutout they guarded did not happen)."""
        if keys:
            self.store.delete(*keys)

    # -- the windows the module uses ------------------------------------------------------
    @staticmethod
    def helix_keys(broadcaster_id: str, target_id: str) -> tuple[str, str]:
        """Store keys of Twitch's per-channel and per-target ``/shoutout`` cooldowns."""
        return (
            f"shoutout:helix:global:{broadcaster_id}",
            f"shoutout:helix:target:{broadcaster_id}:{target_id}",
        )

    def claim_helix(self, broadcaster_id: str, target_id: str) -> Slot:
        """Take Twitch's 2-minute channel and 60-minute target windows, or say which blocks."""
        channel_key, target_key = self.helix_keys(broadcaster_id, target_id)
        target_left = self.remaining(target_key, HELIX_TARGET_COOLDOWN)
        if target_left > 0:
            return Slot(False, "target", target_left)
        if not self.claim(channel_key, HELIX_GLOBAL_COOLDOWN):
            return Slot(False, "channel", self.remaining(channel_key, HELIX_GLOBAL_COOLDOWN))
        if not self.claim(target_key, HELIX_TARGET_COOLDOWN):
            self.release(channel_key)
            return Slot(False, "target", self.remaining(target_key, HELIX_TARGET_COOLDOWN))
        return Slot(True)

    def release_helix(self, broadcaster_id: str, target_id: str) -> None:
        """Give both Twitch windows back (Twitch refused the shoutout, so none started)."""
        self.release(*self.helix_keys(broadcaster_id, target_id))

    def claim_auto(self, entity_id: str, target: str, period: float) -> bool:
        """Take the automatic-shoutout window of one target user in one channel."""
        return self.claim(f"shoutout:auto:{entity_id}:{target.lower()}", period)
