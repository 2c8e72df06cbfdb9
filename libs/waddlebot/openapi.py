"""OpenAPI 3.1 documents generated from the routes an app actually registered.

Every action registered through :func:`waddlebot.web.endpoint` is described: its path
(py4web ``<name>``/``<name:int>`` placeholders become path parameters), method, summary
(the handler's docstring), whether it needs the service key, its request body and the
error body of DESIGN §8. Served at ``/api/<app>/openapi.json``.
"""

from __future__ import annotations

import re

from .web import ENDPOINTS

_PLACEHOLDER = re.compile(r"<(\w+)(?::(\w+))?>")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}


def _openapi_path(rule: str) -> tuple[str, list[dict]]:
    parameters = []

    def replace(found: re.Match) -> str:
        name, kind = found.group(1), found.group(2)
        schema = {"type": "integer"} if kind == "int" else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PLACEHOLDER.sub(replace, rule), parameters


def build_document(app_name: str, *, title: str, version: str, server_url: str) -> dict:
    """The OpenAPI 3.1 document of one app's JSON endpoints."""
    paths: dict = {}
    for (app, rule, method), info in sorted(ENDPOINTS.items()):
        if app != app_name:
            continue
        path, parameters = _openapi_path(rule)
        ok = str(info["status"])
        responses = {
            ok: {
                "description": "success",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "4XX": {
                "description": "client error naming the field",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
            "503": {
                "description": "a dependency is down; retry after Retry-After",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        }
        operation = {
            "operationId": info["operation_id"],
            "summary": info["summary"],
            "responses": responses,
        }
        if parameters:
            operation["parameters"] = parameters
        if info["keyed"]:
            operation["security"] = [{"ServiceKey": []}]
        if method in ("POST", "PUT", "PATCH"):
            schema = info["request_schema"] or {"type": "object"}
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "ServiceKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
        },
    }
