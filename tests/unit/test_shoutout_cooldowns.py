"""Shoutout cooldowns: Twitch's 2-minute channel and 60-minute target windows, auto ones.

The module is loaded from its file so that importing it does not start the shoutout
app. The store is the real in-process store; the clock is moved by hand.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from waddlebot.store import MemoryStore

_PATH = (
    Path(__file__).resolve().parents[2]
    / "shoutout_interaction_module"
    / "services"
    / "cooldowns.py"
)


def _load():
    name = "shoutout_cooldowns_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


cd = _load()


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cooldowns(clock):
    store = MemoryStore()
    yield cd.Cooldowns(store, clock=clock)
    store.close()


def test_claim_remaining_release(cooldowns, clock):
    assert cooldowns.remaining("k", 60) == 0
    assert cooldowns.claim("k", 60)
    assert not cooldowns.claim("k", 60)
    clock.now += 45
    assert cooldowns.remaining("k", 60) == pytest.approx(15)
    clock.now += 15
    # the window is over by the clock even though the store key has not expired yet
    assert cooldowns.remaining("k", 60) == 0
    assert cooldowns.claim("k", 60)
    cooldowns.release("k")
    assert cooldowns.claim("k", 60)


def test_twitch_allows_one_shoutout_per_channel_every_two_minutes(cooldowns, clock):
    assert cooldowns.claim_helix("chan", "bob") == cd.Slot(True)
    blocked = cooldowns.claim_helix("chan", "carol")
    assert (blocked.allowed, blocked.blocked_by) == (False, "channel")
    assert blocked.remaining == pytest.approx(cd.HELIX_GLOBAL_COOLDOWN)
    # another channel is not affected
    assert cooldowns.claim_helix("other", "carol").allowed
    clock.now += cd.HELIX_GLOBAL_COOLDOWN
    assert cooldowns.claim_helix("chan", "carol").allowed


def test_twitch_allows_one_shoutout_per_target_every_hour(cooldowns, clock):
    assert cooldowns.claim_helix("chan", "bob").allowed
    clock.now += cd.HELIX_GLOBAL_COOLDOWN + 1
    blocked = cooldowns.claim_helix("chan", "bob")
    assert (blocked.allowed, blocked.blocked_by) == (False, "target")
    assert blocked.remaining == pytest.approx(cd.HELIX_TARGET_COOLDOWN - 121)
    # a blocked target does not use up the channel's window
    assert cooldowns.claim_helix("chan", "carol").allowed
    clock.now += cd.HELIX_TARGET_COOLDOWN
    assert cooldowns.claim_helix("chan", "bob").allowed


def test_a_refused_shoutout_gives_both_windows_back(cooldowns):
    assert cooldowns.claim_helix("chan", "bob").allowed
    cooldowns.release_helix("chan", "bob")
    assert cooldowns.claim_helix("chan", "bob").allowed


def test_auto_shoutouts_once_per_target_and_channel_per_period(cooldowns, clock):
    assert cooldowns.claim_auto("twitch:1:1", "Bob", 3600)
    assert not cooldowns.claim_auto("twitch:1:1", "bob", 3600)
    assert cooldowns.claim_auto("twitch:1:1", "carol", 3600)
    assert cooldowns.claim_auto("twitch:2:2", "bob", 3600)
    clock.now += 3599
    assert not cooldowns.claim_auto("twitch:1:1", "bob", 3600)
    clock.now += 1
    assert cooldowns.claim_auto("twitch:1:1", "bob", 3600)


def test_a_garbled_store_value_does_not_block(cooldowns):
    cooldowns.store.set("k", "not-a-time", ttl=60)
    assert cooldowns.remaining("k", 60) == 0
    assert cooldowns.claim("k", 60)
