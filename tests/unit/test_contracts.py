"""``waddlebot.contracts``: the event and module-response contracts of DESIGN §5."""

from __future__ import annotations

import pytest

from waddlebot.contracts import (
    MESSAGE_TYPES,
    Event,
    ModuleResponse,
    entity_id_for,
    parse_module_answer,
)
from waddlebot.testkit import chat_event, platform_event
from waddlebot.web import ValidationError


def _event(**changes) -> dict:
    event = {
        "platform": "twitch",
        "server_id": "123",
        "channel_id": "123",
        "user_id": "42",
        "user_name": "bob",
        "message_type": "chatMessage",
        "message_content": "!so alice",
        "event_id": "m-1",
    }
    for key, value in changes.items():
        if value is _DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


_DROP = object()


def _field_of(data, parser=Event.parse) -> str:
    with pytest.raises(ValidationError) as caught:
        parser(data)
    assert caught.value.status == 400
    assert caught.value.code == "validation_error"
    assert caught.value.body()["error"]["field"] == caught.value.field
    return caught.value.field


# -- Event ----------------------------------------------------------------------------


def test_entity_id_format():
    assert entity_id_for("discord", "g1", "c2") == "discord:g1:c2"


def test_valid_chat_event():
    event = Event.parse(
        _event(user_roles=["Broadcaster", "VIP"], owner_user_id="123", metadata={"amount": 5})
    )
    assert event.entity_id == "twitch:123:123"
    assert event.message_content == "!so alice"
    assert event.user_roles == ("broadcaster", "vip")
    assert event.owner_user_id == "123"
    assert event.metadata == {"amount": 5}
    data = event.to_dict()
    assert data["user_roles"] == ["broadcaster", "vip"]
    assert data["platform"] == "twitch" and data["event_id"] == "m-1"
    assert Event.parse(data) == event


def test_testkit_builders_produce_valid_events():
    assert Event.parse(chat_event("!help")).entity_id == "console:demo:demo"
    raid = Event.parse(platform_event("raid", metadata={"viewers": 12}))
    assert raid.message_content is None and raid.metadata == {"viewers": 12}


@pytest.mark.parametrize("message_type", [t for t in MESSAGE_TYPES if t != "chatMessage"])
def test_non_chat_events_need_no_content(message_type):
    event = Event.parse(_event(message_type=message_type, message_content=_DROP))
    assert event.message_type == message_type and event.message_content is None


def test_not_an_object():
    assert _field_of(["platform"]) == "event"
    assert _field_of(None) == "event"


@pytest.mark.parametrize(
    "field", ["platform", "server_id", "channel_id", "user_id", "user_name", "message_type"]
)
def test_missing_required_field_is_named(field):
    assert _field_of(_event(**{field: _DROP})) == field


@pytest.mark.parametrize("field", ["server_id", "channel_id", "user_id", "user_name"])
def test_wrong_type_is_named(field):
    assert _field_of(_event(**{field: 123})) == field


@pytest.mark.parametrize("field", ["server_id", "user_name"])
def test_blank_strings_are_refused(field):
    assert _field_of(_event(**{field: "   "})) == field


def test_unknown_platform_and_message_type():
    assert _field_of(_event(platform="myspace")) == "platform"
    assert _field_of(_event(platform=["twitch"])) == "platform"
    assert _field_of(_event(message_type="chat")) == "message_type"


def test_chat_needs_content():
    assert _field_of(_event(message_content=_DROP)) == "message_content"
    assert _field_of(_event(message_content="  ")) == "message_content"
    assert _field_of(_event(message_content=7)) == "message_content"


def test_length_limits():
    assert Event.parse(_event(message_content="x" * 4000)).message_content
    assert _field_of(_event(message_content="x" * 4001)) == "message_content"
    assert _field_of(_event(user_id="1" * 256)) == "user_id"
    assert _field_of(_event(event_id="e" * 256)) == "event_id"


def test_metadata_must_be_a_small_object():
    assert _field_of(_event(metadata=[1, 2])) == "metadata"
    assert _field_of(_event(metadata="amount=5")) == "metadata"
    many = {f"k{i}": i for i in range(65)}
    assert _field_of(_event(metadata=many)) == "metadata"
    assert Event.parse(_event(metadata=None)).metadata == {}


def test_user_roles_validation():
    assert _field_of(_event(user_roles="moderator")) == "user_roles"
    assert _field_of(_event(user_roles=["moderator", 3])) == "user_roles"
    assert _field_of(_event(user_roles=["emperor"])) == "user_roles"
    assert Event.parse(_event(user_roles=None)).user_roles == ()


def test_optional_ids_must_be_strings():
    assert _field_of(_event(event_id=99)) == "event_id"
    assert _field_of(_event(owner_user_id=99)) == "owner_user_id"


def test_the_first_bad_field_is_reported_in_a_stable_order():
    bad = _event(platform="nope", message_type="nope", user_id=1)
    assert _field_of(bad) == "platform"


# -- ModuleResponse -------------------------------------------------------------------


def test_chat_is_the_default_action():
    response = ModuleResponse.parse({"chat_message": "hello"})
    assert response.response_action == "chat" and response.success is True
    assert response.to_dict() == {
        "response_action": "chat",
        "success": True,
        "chat_message": "hello",
        "ticker_duration": 10,
        "form_submit_method": "POST",
    }


def test_successful_chat_needs_a_message():
    assert _field_of({"response_action": "chat"}, ModuleResponse.parse) == "chat_message"
    failed = ModuleResponse.parse({"success": False, "error_message": "boom"})
    assert failed.chat_message is None and failed.error_message == "boom"


def test_response_scalar_types():
    parse = ModuleResponse.parse
    assert _field_of({"chat_message": "x", "success": "yes"}, parse) == "success"
    assert _field_of({"chat_message": "x", "response_action": "dance"}, parse) == (
        "response_action"
    )
    assert _field_of({"chat_message": "x", "processing_time_ms": -1}, parse) == (
        "processing_time_ms"
    )
    assert _field_of({"chat_message": "x", "processing_time_ms": True}, parse) == (
        "processing_time_ms"
    )
    assert _field_of({"chat_message": "x", "response_data": []}, parse) == "response_data"
    assert _field_of("hello", parse) == "response"


def test_media_response():
    media = ModuleResponse.parse(
        {"response_action": "media", "media_type": "clip", "media_url": "https://clips/x.mp4"}
    )
    assert media.media_type == "clip" and media.media_url == "https://clips/x.mp4"
    parse = ModuleResponse.parse
    assert _field_of({"response_action": "media", "media_url": "https://x"}, parse) == (
        "media_type"
    )
    assert (
        _field_of(
            {"response_action": "media", "media_type": "gif", "media_url": "https://x"}, parse
        )
        == "media_type"
    )
    assert _field_of({"response_action": "media", "media_type": "image"}, parse) == "media_url"
    assert (
        _field_of(
            {"response_action": "media", "media_type": "image", "media_url": "javascript:alert(1)"},
            parse,
        )
        == "media_url"
    )


def test_ticker_response():
    ticker = ModuleResponse.parse({"response_action": "ticker", "ticker_text": "Hi"})
    assert ticker.ticker_duration == 10
    parse = ModuleResponse.parse
    assert _field_of({"response_action": "ticker"}, parse) == "ticker_text"
    for bad in (0, 601, "10", 2.5, True):
        data = {"response_action": "ticker", "ticker_text": "t", "ticker_duration": bad}
        assert _field_of(data, parse) == "ticker_duration"
    ok = {"response_action": "ticker", "ticker_text": "t", "ticker_duration": 600}
    assert ModuleResponse.parse(ok).ticker_duration == 600


def _form(**changes) -> dict:
    form = {
        "response_action": "form",
        "form_title": "Poll",
        "form_fields": [
            {"name": "colour", "type": "select", "options": ["red", "blue"]},
            {"name": "why", "type": "textarea", "required": True},
        ],
        "form_submit_url": "https://example.org/submit",
    }
    form.update(changes)
    return form


def test_form_response():
    form = ModuleResponse.parse(_form())
    assert form.form_submit_method == "POST"
    assert form.form_fields[0] == {
        "name": "colour",
        "type": "select",
        "label": "colour",
        "required": False,
        "options": ["red", "blue"],
    }
    assert form.form_fields[1]["required"] is True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"form_title": None}, "form_title"),
        ({"form_fields": None}, "form_fields"),
        ({"form_fields": []}, "form_fields"),
        ({"form_fields": {"name": "x"}}, "form_fields"),
        ({"form_fields": ["x"]}, "form_fields[0]"),
        ({"form_fields": [{"type": "text"}]}, "form_fields[0].name"),
        ({"form_fields": [{"name": "a", "type": "colour"}]}, "form_fields[0].type"),
        (
            {"form_fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "radio"}]},
            "form_fields[1].options",
        ),
        (
            {"form_fields": [{"name": "a", "type": "text", "options": "x"}]},
            "form_fields[0].options",
        ),
        ({"form_submit_url": None}, "form_submit_url"),
        ({"form_submit_url": "ftp://x"}, "form_submit_url"),
        ({"form_submit_method": "DELETE"}, "form_submit_method"),
        ({"form_callback_url": "file:///etc/passwd"}, "form_callback_url"),
    ],
)
def test_form_errors_name_the_field(changes, field):
    assert _field_of(_form(**changes), ModuleResponse.parse) == field


# -- parse_module_answer --------------------------------------------------------------


def test_module_answer_shapes():
    assert parse_module_answer({}) == []
    single = parse_module_answer({"chat_message": "hi"})
    assert [r.chat_message for r in single] == ["hi"]
    several = parse_module_answer(
        {"responses": [{"chat_message": "a"}, {"response_action": "ticker", "ticker_text": "b"}]}
    )
    assert [r.response_action for r in several] == ["chat", "ticker"]


@pytest.mark.parametrize("answer", [None, [], "ok", {"text": "hi"}, 5])
def test_module_answer_without_a_response(answer):
    assert _field_of(answer, parse_module_answer) == "response_action"


def test_module_answer_items_are_validated():
    answer = {"responses": [{"chat_message": "ok"}, {"response_action": "media"}]}
    assert _field_of(answer, parse_module_answer) == "media_type"
