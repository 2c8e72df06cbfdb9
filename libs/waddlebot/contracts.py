"""The platform-neutral contracts of DESIGN §5: events in, module responses out.

Collectors send :class:`Event`; modules answer with :class:`ModuleResponse`. Both are
validated here so every app rejects bad input the same way: a
:class:`~waddlebot.web.ValidationError` naming the first bad field.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from .web import ValidationError

PLATFORMS = ("twitch", "discord", "slack", "console")

MESSAGE_TYPES = (
    "chatMessage",
    "subscription",
    "follow",
    "donation",
    "cheer",
    "raid",
    "host",
    "subgift",
    "resub",
    "reaction",
    "member_join",
    "member_leave",
    "voice_join",
    "voice_leave",
    "voice_time",
    "boost",
    "ban",
    "kick",
    "timeout",
    "warn",
    "file_share",
    "app_mention",
    "channel_join",
)

#: badges/permissions a collector may report, highest first
PLATFORM_ROLES = ("broadcaster", "owner", "admin", "moderator", "vip", "subscriber", "member")

RESPONSE_ACTIONS = ("chat", "media", "ticker", "form")
MEDIA_TYPES = ("video", "image", "audio", "clip")
FORM_FIELD_TYPES = (
    "text",
    "textarea",
    "select",
    "multiselect",
    "radio",
    "checkbox",
    "number",
    "email",
    "url",
    "date",
    "time",
)

MAX_ID = 255
MAX_NAME = 255
MAX_MESSAGE = 4000
MAX_METADATA_KEYS = 64


def _string(
    data: Mapping,
    name: str,
    *,
    required: bool = True,
    max_len: int = MAX_ID,
    allow_empty: bool = False,
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    if not allow_empty and not value.strip():
        raise ValidationError(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} is longer than {max_len} characters", field=name)
    return value


def _choice(
    data: Mapping,
    name: str,
    choices: tuple[str, ...],
    *,
    required: bool = True,
    default: str | None = None,
) -> str | None:
    value = data.get(name, default)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(f"{name} must be one of: {', '.join(choices)}", field=name)
    return value


def _integer(
    data: Mapping,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = 2**31 - 1,
) -> int | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer", field=name)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def _boolean(data: Mapping, name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


def _object(data: Mapping, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be an object", field=name)
    return value


def entity_id_for(platform: str, server_id: str, channel_id: str) -> str:
    """The entity id of DESIGN §5: ``platform:server_id:channel_id``."""
    return f"{platform}:{server_id}:{channel_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One platform event as a collector reports it."""

    platform: str
    server_id: str
    channel_id: str
    user_id: str
    user_name: str
    message_type: str
    message_content: str | None = None
    event_id: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    user_roles: tuple[str, ...] = ()
    owner_user_id: str | None = None

    @property
    def entity_id(self) -> str:
        """``platform:server_id:channel_id``."""
        return entity_id_for(self.platform, self.server_id, self.channel_id)

    @classmethod
    def parse(cls, data: Any) -> Event:
        """Validate a decoded JSON object; raise ValidationError naming the field."""
        if not isinstance(data, dict):
            raise ValidationError("an event must be a JSON object", field="event")
        platform = _choice(data, "platform", PLATFORMS)
        message_type = _choice(data, "message_type", MESSAGE_TYPES)
        content = _string(
            data,
            "message_content",
            required=message_type == "chatMessage",
            max_len=MAX_MESSAGE,
            allow_empty=False,
        )
        metadata = _object(data, "metadata")
        if len(metadata) > MAX_METADATA_KEYS:
            raise ValidationError(
                f"metadata has more than {MAX_METADATA_KEYS} keys", field="metadata"
            )
        roles = data.get("user_roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationError("user_roles must be a list of strings", field="user_roles")
        unknown = [r for r in roles if r.lower() not in PLATFORM_ROLES]
        if unknown:
            raise ValidationError(f"user_roles has unknown role {unknown[0]!r}", field="user_roles")
        return cls(
            platform=platform,
            server_id=_string(data, "server_id"),
            channel_id=_string(data, "channel_id"),
            user_id=_string(data, "user_id"),
            user_name=_string(data, "user_name", max_len=MAX_NAME),
            message_type=message_type,
            message_content=content,
            event_id=_string(data, "event_id", required=False),
            metadata=metadata,
            user_roles=tuple(r.lower() for r in roles),
            owner_user_id=_string(data, "owner_user_id", required=False),
        )

    def to_dict(self) -> dict:
        """The event as JSON-ready data."""
        data = dataclasses.asdict(self)
        data["user_roles"] = list(self.user_roles)
        return data


def _form_fields(data: Mapping) -> list[dict]:
    fields = data.get("form_fields")
    if fields is None:
        return []
    if not isinstance(fields, list) or not fields:
        raise ValidationError("form_fields must be a non-empty list", field="form_fields")
    parsed = []
    for position, field in enumerate(fields):
        label = f"form_fields[{position}]"
        if not isinstance(field, dict):
            raise ValidationError(f"{label} must be an object", field=label)
        name = field.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"{label}.name is required", field=f"{label}.name")
        kind = field.get("type")
        if kind not in FORM_FIELD_TYPES:
            raise ValidationError(
                f"{label}.type must be one of: {', '.join(FORM_FIELD_TYPES)}",
                field=f"{label}.type",
            )
        options = field.get("options") or []
        if not isinstance(options, list):
            raise ValidationError(f"{label}.options must be a list", field=f"{label}.options")
        if kind in ("select", "multiselect", "radio") and not options:
            raise ValidationError(
                f"{label}.options is required for {kind}", field=f"{label}.options"
            )
        parsed.append(
            {
                "name": name,
                "type": kind,
                "label": str(field.get("label") or name),
                "required": bool(field.get("required", False)),
                "options": options,
            }
        )
    return parsed


@dataclasses.dataclass(frozen=True, slots=True)
class ModuleResponse:
    """What a module answers: a chat line, media, a ticker or a form (spec fields)."""

    response_action: str
    success: bool = True
    module_name: str | None = None
    chat_message: str | None = None
    media_type: str | None = None
    media_url: str | None = None
    ticker_text: str | None = None
    ticker_duration: int = 10
    form_title: str | None = None
    form_description: str | None = None
    form_fields: list = dataclasses.field(default_factory=list)
    form_submit_url: str | None = None
    form_submit_method: str = "POST"
    form_callback_url: str | None = None
    error_message: str | None = None
    processing_time_ms: int | None = None
    response_data: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> ModuleResponse:
        """Validate a response object; raise ValidationError naming the field."""
        if not isinstance(data, dict):
            raise ValidationError("a response must be a JSON object", field="response")
        success = _boolean(data, "success", True)
        action = _choice(data, "response_action", RESPONSE_ACTIONS, default="chat")
        values = dict(
            response_action=action,
            success=success,
            module_name=_string(data, "module_name", required=False, max_len=128),
            error_message=_string(data, "error_message", required=False, max_len=MAX_MESSAGE),
            processing_time_ms=_integer(data, "processing_time_ms"),
            response_data=_object(data, "response_data"),
        )
        if action == "chat":
            values["chat_message"] = _string(
                data, "chat_message", required=success, max_len=MAX_MESSAGE
            )
        elif action == "media":
            values["media_type"] = _choice(data, "media_type", MEDIA_TYPES)
            values["media_url"] = _url(data, "media_url", required=True)
            values["chat_message"] = _string(
                data, "chat_message", required=False, max_len=MAX_MESSAGE
            )
        elif action == "ticker":
            values["ticker_text"] = _string(data, "ticker_text", max_len=1000)
            values["ticker_duration"] = _integer(
                data, "ticker_duration", default=10, minimum=1, maximum=600
            )
        else:
            values["form_title"] = _string(data, "form_title", max_len=255)
            values["form_description"] = _string(
                data, "form_description", required=False, max_len=2000
            )
            values["form_fields"] = _form_fields(data)
            if not values["form_fields"]:
                raise ValidationError("form_fields is required for a form", field="form_fields")
            values["form_submit_url"] = _url(data, "form_submit_url", required=True)
            values["form_submit_method"] = _choice(
                data, "form_submit_method", ("GET", "POST", "PUT"), default="POST"
            )
            values["form_callback_url"] = _url(data, "form_callback_url", required=False)
        return cls(**values)

    def to_dict(self) -> dict:
        """Only the fields that mean something for this action (containers copied)."""
        data = {}
        for name in _RESPONSE_FIELDS:
            value = getattr(self, name)
            if value is None or value == [] or value == {}:
                continue
            data[name] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value
        return data


_RESPONSE_FIELDS = tuple(f.name for f in dataclasses.fields(ModuleResponse))


def _url(data: Mapping, name: str, *, required: bool) -> str | None:
    value = _string(data, name, required=required, max_len=2048)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValidationError(f"{name} must be an http(s) URL", field=name)
    return value


def parse_module_answer(data: Any) -> list[ModuleResponse]:
    """A module's inline answer: one response object, or ``{"responses": [...]}``."""
    if isinstance(data, dict) and isinstance(data.get("responses"), list):
        return [ModuleResponse.parse(item) for item in data["responses"]]
    if isinstance(data, dict) and ("response_action" in data or "chat_message" in data):
        return [ModuleResponse.parse(data)]
    if isinstance(data, dict) and not data:
        return []
    raise ValidationError("module answer has no response_action", field="response_action")
