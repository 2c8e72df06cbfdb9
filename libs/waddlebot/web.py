"""HTTP conventions every app shares (DESIGN §8): JSON errors, bodies, pages.

``endpoint`` registers a py4web action whose failures always come back as a JSON
error body (``{"error": {"code", "message", "field"}}``) with a 4xx/5xx status:
never a traceback page. ``json_body`` parses the request body strictly, and the
pagination helpers give every list the same shape.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable

from py4web.core import HTTP, action, objectify, request, response

log = logging.getLogger("waddlebot.web")

MAX_BODY_BYTES = 1_048_576
MAX_PER_PAGE = 500


class ApiError(Exception):
    """An error with an HTTP status that the caller should see as JSON."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict:
        """The JSON error body of DESIGN §8."""
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class ValidationError(ApiError):
    """Bad input: names the offending field."""

    status = 400
    code = "validation_error"


class NotFound(ApiError):
    """The addressed thing does not exist."""

    status = 404
    code = "not_found"


class Unauthorized(ApiError):
    """Missing or wrong credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """Valid credentials without the right to do this."""

    status = 403
    code = "forbidden"


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class ServiceUnavailable(ApiError):
    """A dependency is down; the caller should retry after a while."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs):
        headers = {"Retry-After": str(retry_after)}
        super().__init__(message, headers=headers, **kwargs)


def error_response(error: ApiError) -> HTTP:
    """Turn an ApiError into py4web's HTTP exception with a JSON body."""
    headers = {"Content-Type": "application/json", **error.headers}
    return HTTP(error.status, json.dumps(error.body()), headers=headers)


_translators: list[Callable[[Exception], ApiError | None]] = []


def register_error_translator(translate: Callable[[Exception], ApiError | None]) -> None:
    """Map a library exception (store down, db down) to an ApiError everywhere."""
    _translators.append(translate)


def _translate(exc: Exception) -> ApiError | None:
    for translate in _translators:
        translated = translate(exc)
        if translated is not None:
            return translated
    return None


def json_errors(func: Callable) -> Callable:
    """Wrap an action so every failure answers with a JSON error body."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HTTP:
            raise
        except ApiError as exc:
            raise error_response(exc) from None
        except Exception as exc:  # noqa: BLE001 - the edge turns everything into JSON
            translated = _translate(exc)
            if translated is not None:
                log.warning("dependency failure on %s: %s", request.path, exc)
                raise error_response(translated) from None
            log.exception("unhandled error on %s %s", request.method, request.path)
            raise error_response(
                ApiError("internal error; the event was logged", status=500, code="internal_error")
            ) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    return wrapper


def compact_json(func: Callable) -> Callable:
    """Serialise an action's dict/list answer as compact JSON.

    py4web would write it with ``sort_keys`` and ``indent=2``, which forces the
    pure-Python encoder: on the router's hot path that was a fifth of a plain chat
    event's CPU. Same data, C encoder, no whitespace.
    """

    def wrapper(*args, **kwargs):
        answer = func(*args, **kwargs)
        if isinstance(answer, (dict, list)):
            response.headers["Content-Type"] = "application/json"
            return json.dumps(answer, default=objectify, separators=(",", ":"))
        return answer

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    return wrapper


#: what the OpenAPI generator knows about each JSON action: (app, path, method) -> info
ENDPOINTS: dict[tuple[str, str, str], dict] = {}


def endpoint(
    path: str,
    method: str | Iterable[str] = "GET",
    uses: Iterable = (),
    *,
    request_schema: dict | None = None,
    status: int = 200,
) -> Callable:
    """Register a JSON API action at an absolute path with the given fixtures."""
    methods = [method] if isinstance(method, str) else list(method)
    uses = tuple(uses)

    def decorator(func: Callable) -> Callable:
        guarded = compact_json(json_errors(action.uses(*uses)(func)))
        action(path, method=methods)(guarded)
        keyed = any(getattr(f, "header", None) == "X-API-Key" for f in uses)
        for verb in methods:
            ENDPOINTS[(action.app_name, path, verb.upper())] = {
                "summary": (func.__doc__ or func.__name__).strip().splitlines()[0],
                "keyed": keyed,
                "request_schema": request_schema,
                "status": status,
                "operation_id": f"{func.__module__.rsplit('.', 2)[-2]}_{func.__name__}_{verb}",
            }
        return func

    return decorator


def _body_bytes() -> bytes:
    """The request body, at most ``MAX_BODY_BYTES`` + 1 bytes of it.

    A body with a ``Content-Length`` within bounds is read from ``wsgi.input`` in one
    call and handed to ombott as the request's body (later readers of
    ``request.body`` see the same bytes). ombott's own reader, used otherwise (chunked,
    no length, too large), copies the body through a chunk loop into a buffer after
    a multipart check and a few config lookups (≈ 3.7 % of a router worker's profile
    samples; bench/README.md, router).
    """
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    if (
        length
        and "ombott.request.body" not in environ
        and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        try:
            size = int(length)
        except ValueError:
            size = -1
        if 0 <= size <= MAX_BODY_BYTES:
            raw = environ["wsgi.input"].read(size)
            body = io.BytesIO(raw)
            body.ombott_markup = None  # what ombott's reader sets: not multipart
            environ["wsgi.input"] = environ["ombott.request.body"] = body
            return raw
    return request.body.read(MAX_BODY_BYTES + 1)


def json_body(*, required: bool = True) -> dict:
    """The request body as a JSON object, or a 400 naming ``body``."""
    raw = _body_bytes()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError("request body too large", field="body", status=413, code="too_large")
    if not raw.strip():
        if required:
            raise ValidationError("a JSON object body is required", field="body")
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("body must be a JSON object", field="body")
    return data


def query_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer query parameter, validated, or a 400 naming it."""
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValidationError(f"{name} must be {bound}", field=name)
    return value


def query_bool(name: str) -> bool | None:
    """A true/false query parameter, None when absent."""
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValidationError(f"{name} must be true or false", field=name)


def page_params() -> tuple[int, int]:
    """``page`` and ``per_page`` (max 500) from the query string."""
    page = query_int("page", 1, minimum=1)
    per_page = query_int("per_page", 50, minimum=1, maximum=MAX_PER_PAGE)
    return page, per_page


def page_of(items: list, *, page: int, per_page: int, total: int) -> dict:
    """The list shape of DESIGN §8."""
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def set_status(status: int) -> None:
    """Set the HTTP status of a successful JSON answer (201, 202 ...)."""
    response.status = status
