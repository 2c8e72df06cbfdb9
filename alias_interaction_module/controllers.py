"""HTTP surface of the alias app: the router's calls and the portal's management API.

* ``POST /api/alias/manage`` - the router's call for ``!alias add|remove|list``;
* ``POST /api/alias/run`` - the router's call for every alias name;
* ``GET|POST|DELETE /api/alias/aliases`` and ``GET|DELETE /api/alias/aliases/<id>`` -
  the portal's management API (service key).

``/api/alias/health`` (open) and ``/api/alias/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from __future__ import annotations

from py4web.core import request

from waddlebot.modules import CommandCall
from waddlebot.web import (
    NotFound,
    ServiceUnavailable,
    ValidationError,
    endpoint,
    json_body,
    page_of,
    page_params,
    set_status,
)

from .common import alias_chat, book, database, service_key
from .services.aliases import Alias, FieldError, RouterUnavailable
from .services.expansion import AliasError, normalize_name

API = dict(uses=(service_key, database))


@endpoint("/api/alias/manage", method="POST", **API)
def manage():
    """The router's call for ``!alias``: add, remove or list aliases in chat."""
    return alias_chat.manage(CommandCall.parse(json_body()))


@endpoint("/api/alias/run", method="POST", **API)
def run():
    """The router's call for an alias name: expand it and route the result."""
    return alias_chat.run(CommandCall.parse(json_body()))


def _community(source: dict) -> int:
    """The community named by ``community_id`` or ``entity_id`` (query or body)."""
    raw = source.get("community_id")
    if raw not in (None, ""):
        if isinstance(raw, bool) or not str(raw).isdigit():
            raise ValidationError("community_id must be an integer", field="community_id")
        community_id = int(raw)
        if not book.community_exists(community_id):
            raise NotFound(f"community {raw!r} does not exist", field="community_id")
        return community_id
    entity_id = source.get("entity_id")
    if not isinstance(entity_id, str) or not entity_id:
        raise ValidationError("community_id or entity_id is required", field="community_id")
    community_id = book.community_of(entity_id)
    if community_id is None:
        raise NotFound(f"entity {entity_id!r} is unknown", field="entity_id")
    return community_id


def _name(raw) -> str:
    try:
        return normalize_name(raw if isinstance(raw, str) else "")
    except AliasError as exc:
        raise ValidationError(str(exc), field="name") from None


def _text(body: dict, name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string", field=name)
    return value


@endpoint("/api/alias/aliases", method="GET", **API)
def list_aliases():
    """A community's aliases with usage statistics (``?community_id=`` or ``?entity_id=``)."""
    community_id = _community(dict(request.query))
    page, per_page = page_params()
    total, aliases = book.list(community_id, page=page, per_page=per_page)
    answer = page_of([a.to_dict() for a in aliases], page=page, per_page=per_page, total=total)
    answer["community_id"] = community_id
    return answer


@endpoint("/api/alias/aliases", method="POST", **API)
def create_alias():
    """Create or replace an alias: ``{entity_id|community_id, name, command, created_by}``."""
    body = json_body()
    community_id = _community(body)
    name = _text(body, "name", required=True)
    command = _text(body, "command", required=True)
    created_by = _text(body, "created_by", required=False)
    if created_by is not None and len(created_by) > 255:
        raise ValidationError("created_by is longer than 255 characters", field="created_by")
    try:
        alias, created = book.save(
            community_id=community_id, name=name, command=command, created_by=created_by
        )
    except FieldError as exc:
        raise ValidationError(str(exc), field=exc.field) from None
    except RouterUnavailable:
        raise ServiceUnavailable("the router cannot be reached; the alias was not saved") from None
    set_status(201 if created else 200)
    return {**alias.to_dict(), "created": created}


def _removed(alias: Alias | None) -> dict:
    if alias is None:
        raise NotFound("no such alias", field="name")
    book.remove(alias)
    return {"deleted": True, **alias.to_dict()}


@endpoint("/api/alias/aliases", method="DELETE", **API)
def delete_alias():
    """Remove an alias by ``?name=`` in ``?community_id=`` or ``?entity_id=``."""
    query = dict(request.query)
    community_id = _community(query)
    return _removed(book.get(community_id, _name(query.get("name"))))


def _alias_id(raw: str) -> int:
    if not raw.isdigit():
        raise NotFound("no such alias", field="id")
    return int(raw)


@endpoint("/api/alias/aliases/<alias_id>", method="GET", **API)
def get_alias(alias_id):
    """One alias by id."""
    alias = book.get_by_id(_alias_id(alias_id))
    if alias is None:
        raise NotFound("no such alias", field="id")
    return alias.to_dict()


@endpoint("/api/alias/aliases/<alias_id>", method="DELETE", **API)
def delete_alias_by_id(alias_id):
    """Remove an alias by id."""
    return _removed(book.get_by_id(_alias_id(alias_id)))
