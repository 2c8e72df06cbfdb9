"""EventSub signature, timestamp and subscription helpers (waddlebot.twitch.eventsub)."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest

from waddlebot.twitch import eventsub

SECRET = "s3cret-webhook-key"
BODY = b'{"subscription": {"type": "channel.follow"}, "event": {"user_id": "1234"}}'
MESSAGE_ID = "befa7b53-d79d-478f-86b9-120f112b044e"
TIMESTAMP = "2019-11-16T10:11:12.634234626Z"


def test_signature_is_hmac_sha256_of_id_timestamp_and_body():
    expected = hmac.new(
        SECRET.encode(), (MESSAGE_ID + TIMESTAMP).encode() + BODY, hashlib.sha256
    ).hexdigest()
    assert eventsub.signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY) == f"sha256={expected}"


def test_verify_accepts_only_the_exact_message():
    good = eventsub.signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    assert eventsub.verify_signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY, good)
    assert not eventsub.verify_signature("another-secret-key", MESSAGE_ID, TIMESTAMP, BODY, good)
    assert not eventsub.verify_signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY + b" ", good)
    assert not eventsub.verify_signature(SECRET, "other-id", TIMESTAMP, BODY, good)
    assert not eventsub.verify_signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY, None)
    assert not eventsub.verify_signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY, good[7:])
    assert not eventsub.verify_signature(SECRET, "", TIMESTAMP, BODY, good)
    assert not eventsub.verify_signature(SECRET, MESSAGE_ID, TIMESTAMP, BODY, "sha256=é")


def test_timestamps_with_nanoseconds_and_offsets_parse_to_utc():
    parsed = eventsub.parse_timestamp(TIMESTAMP)
    assert parsed == datetime.datetime(2019, 11, 16, 10, 11, 12, 634234, tzinfo=datetime.UTC)
    shifted = eventsub.parse_timestamp("2019-11-16T12:11:12+02:00")
    assert shifted == datetime.datetime(2019, 11, 16, 10, 11, 12, tzinfo=datetime.UTC)
    with pytest.raises(ValueError):
        eventsub.parse_timestamp("yesterday")
    round_trip = eventsub.parse_timestamp(eventsub.format_timestamp(parsed))
    assert round_trip == parsed


def test_freshness_window_is_ten_minutes_either_way():
    now = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.UTC)
    minutes = datetime.timedelta(minutes=1)
    assert eventsub.is_fresh(now - 9 * minutes, now=now)
    assert not eventsub.is_fresh(now - 11 * minutes, now=now)
    assert not eventsub.is_fresh(now + 11 * minutes, now=now)


def test_signed_headers_are_what_twitch_sends():
    headers = eventsub.signed_headers(
        SECRET, BODY, message_type="revocation", subscription_type="channel.cheer"
    )
    assert headers[eventsub.MESSAGE_TYPE] == "revocation"
    assert headers[eventsub.SUBSCRIPTION_TYPE] == "channel.cheer"
    assert headers[eventsub.MESSAGE_SIGNATURE].startswith("sha256=")
    assert eventsub.verify_signature(
        SECRET,
        headers[eventsub.MESSAGE_ID],
        headers[eventsub.MESSAGE_TIMESTAMP],
        BODY,
        headers[eventsub.MESSAGE_SIGNATURE],
    )
    assert eventsub.is_fresh(eventsub.parse_timestamp(headers[eventsub.MESSAGE_TIMESTAMP]))


def test_channel_subscriptions_cover_every_event_type():
    specs = {s.type: s for s in eventsub.channel_subscriptions("1337", "999")}
    assert set(specs) == set(eventsub.CHANNEL_TYPES)
    assert specs["channel.chat.message"].condition == {
        "broadcaster_user_id": "1337",
        "user_id": "999",
    }
    assert specs["channel.follow"].version == "2"
    assert specs["channel.follow"].condition["moderator_user_id"] == "1337"
    assert specs["channel.raid"].condition == {"to_broadcaster_user_id": "1337"}
    body = specs["channel.cheer"].body(callback="https://x.example/cb", secret=SECRET)
    assert body["transport"] == {
        "method": "webhook",
        "callback": "https://x.example/cb",
        "secret": SECRET,
    }
    without_bot = {s.type for s in eventsub.channel_subscriptions("1337", None)}
    assert "channel.chat.message" not in without_bot


def test_condition_broadcaster_reads_raids_too():
    assert eventsub.condition_broadcaster({"broadcaster_user_id": "1"}) == "1"
    assert eventsub.condition_broadcaster({"to_broadcaster_user_id": "2"}) == "2"
    assert eventsub.condition_broadcaster({}) is None
