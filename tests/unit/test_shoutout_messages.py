"""Shoutout wording and clip choice: default and custom messages, links, greetings, clips.

The modules are loaded from their files so that importing them does not start the
shoutout app.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_SERVICES = Path(__file__).resolve().parents[2] / "shoutout_interaction_module" / "services"


def _load(stem: str):
    name = f"shoutout_{stem}_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _SERVICES / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


msg = _load("messages")
tw = _load("twitch")


def test_default_message_names_the_user_channel_and_game():
    assert msg.default_message("Bob", "Bob", "Celeste") == (
        "Go check out Bob at https://twitch.tv/bob — they were last playing Celeste!"
    )
    assert msg.default_message("Bob", "bob", None) == "Go check out Bob at https://twitch.tv/bob!"
    assert msg.default_message("Bob Smith", None, "") == "Go check out Bob Smith!"


def test_custom_message_placeholders_and_links():
    text = msg.shout_text(
        display_name="Dave",
        login="dave",
        game="Tetris",
        custom_message="{name} plays {game} at {url} ({login}) {unknown}",
        links=["https://a.example", "https://b.example"],
    )
    assert text == (
        "Dave plays Tetris at https://twitch.tv/dave (dave) {unknown} "
        "https://a.example https://b.example"
    )
    no_game = msg.shout_text(
        display_name="Dave", login="dave", game=None, custom_message="{name} {game}!"
    )
    assert no_game == "Dave !"


def test_links_follow_the_default_message_and_greetings_lead():
    text = msg.shout_text(
        display_name="Bob",
        login="bob",
        game=None,
        links=["https://x.example"],
        greeting="Thanks for the follow, Bob!",
    )
    assert (
        text
        == "Thanks for the follow, Bob! Go check out Bob at https://twitch.tv/bob! https://x.example"
    )


@pytest.mark.parametrize(
    ("event", "metadata", "expected"),
    [
        ("raid", {"viewers": 42}, "Thanks for the raid, Bob (42 viewers)!"),
        ("raid", {"viewers": True}, "Thanks for the raid, Bob!"),
        ("raid", {}, "Thanks for the raid, Bob!"),
        ("follow", None, "Thanks for the follow, Bob!"),
        ("subscription", {"tier": "1000"}, "Thanks for subscribing, Bob!"),
        ("command", {}, None),
    ],
)
def test_greetings(event, metadata, expected):
    assert msg.greeting(event, "Bob", metadata) == expected


@pytest.mark.parametrize(
    ("raw", "name", "login"),
    [
        ("@Bob,", "Bob", True),
        ("  bob_42 ", "bob_42", True),
        ("日本語", "日本語", False),
        ("bob smith", "bob smith", False),
        ("a" * 26, "a" * 26, False),
        ("@", "", False),
    ],
)
def test_target_names(raw, name, login):
    assert msg.target_name(raw) == name
    assert msg.is_twitch_login(name) is login


def test_settings_keys_ignore_case_and_mentions():
    assert msg.settings_key("@Bob") == msg.settings_key("bob") == "bob"


def test_links_are_validated():
    assert msg.validate_links(None) == []
    assert msg.validate_links(["https://a.example"]) == ["https://a.example"]
    for bad in (
        ["ftp://a"],
        "https://a",
        [1],
        ["https://a b"],
        ["https://a"] * 6,
        ["https://" + "a" * 400],
    ):
        with pytest.raises(ValueError):
            msg.validate_links(bad)


def clip(clip_id: str, featured: bool = False, embed: str | None = None):
    return tw.Clip.from_helix(
        {
            "id": clip_id,
            "url": f"https://clips.twitch.tv/{clip_id}",
            "embed_url": embed
            if embed is not None
            else f"https://clips.twitch.tv/embed?clip={clip_id}",
            "is_featured": featured,
            "view_count": 3,
        }
    )


def test_featured_clips_are_preferred():
    clips = [clip("a"), clip("f1", True), clip("b"), clip("f2", True)]
    rng = random.Random(1)
    picked = {tw.pick_clip(clips, rng).id for _ in range(50)}
    assert picked == {"f1", "f2"}


def test_any_clip_when_none_is_featured_and_none_without_clips():
    rng = random.Random(2)
    assert {tw.pick_clip([clip("a"), clip("b")], rng).id for _ in range(50)} == {"a", "b"}
    assert tw.pick_clip([], rng) is None
    assert tw.pick_clip([clip("x", True, embed="")], rng) is None


def test_users_from_helix():
    user = tw.TwitchUser.from_helix({"id": 5, "login": "bob", "profile_image_url": ""})
    assert (user.id, user.display_name, user.profile_image_url) == ("5", "bob", None)
