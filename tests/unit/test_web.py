"""``waddlebot.web``: JSON errors, strict bodies and the list/page conventions (DESIGN §8).

No server: ``waddlebot.web.request`` is replaced by a tiny fake with ``.body`` (BytesIO),
``.query`` (dict), ``.path`` and ``.method``.
"""

from __future__ import annotations

import io
import json
import logging
import types

import pytest
from py4web.core import HTTP

from waddlebot import web
from waddlebot.web import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
)


@pytest.fixture(params=["content_length", "ombott_reader"])
def fake_request(request, monkeypatch):
    """Install a fake request; call it with body bytes and/or query parameters.

    Every test runs twice: with a ``Content-Length`` (the body is read from
    ``wsgi.input`` directly) and without one (ombott's reader, ``request.body``).
    """

    def install(body: bytes = b"", **query: str):
        environ = {}
        if request.param == "content_length":
            environ = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        fake = types.SimpleNamespace(
            body=io.BytesIO(body),
            query=dict(query),
            path="/api/test",
            method="POST",
            environ=environ,
        )
        monkeypatch.setattr(web, "request", fake)
        return fake

    return install


def _raises(error_type, func, *args, **kwargs) -> ApiError:
    with pytest.raises(error_type) as caught:
        func(*args, **kwargs)
    return caught.value


# -- errors ---------------------------------------------------------------------------


def test_error_body_shape():
    assert ValidationError("bad", field="message_type").body() == {
        "error": {"code": "validation_error", "message": "bad", "field": "message_type"}
    }
    assert ApiError("oops").body() == {"error": {"code": "bad_request", "message": "oops"}}


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (ApiError, 400, "bad_request"),
        (ValidationError, 400, "validation_error"),
        (Unauthorized, 401, "unauthorized"),
        (Forbidden, 403, "forbidden"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
        (ServiceUnavailable, 503, "service_unavailable"),
    ],
)
def test_error_classes(cls, status, code):
    error = cls("m")
    assert (error.status, error.code) == (status, code)


def test_status_and_code_overrides_do_not_leak_to_the_class():
    error = ApiError("teapot", status=418, code="teapot")
    assert (error.status, error.code) == (418, "teapot")
    assert (ApiError.status, ApiError.code) == (400, "bad_request")


def test_service_unavailable_says_when_to_retry():
    error = ServiceUnavailable("db down", retry_after=7)
    assert error.headers == {"Retry-After": "7"}
    http = web.error_response(error)
    assert http.status == 503
    assert http.headers["Retry-After"] == "7"
    assert http.headers["Content-Type"] == "application/json"


def test_error_response_is_json():
    http = web.error_response(NotFound("no such thing", field="id"))
    assert isinstance(http, HTTP) and http.status == 404
    assert json.loads(http.body) == {
        "error": {"code": "not_found", "message": "no such thing", "field": "id"}
    }


# -- json_errors ----------------------------------------------------------------------


def test_json_errors_turns_api_errors_into_http(fake_request):
    fake_request()

    @web.json_errors
    def action():
        raise ValidationError("platform is required", field="platform")

    http = _raises(HTTP, action)
    assert http.status == 400
    assert json.loads(http.body)["error"]["field"] == "platform"
    assert action.__name__ == "action"


def test_json_errors_passes_http_and_results_through(fake_request):
    fake_request()
    assert web.json_errors(lambda: {"ok": True})() == {"ok": True}

    def redirecting():
        raise HTTP(303)

    assert _raises(HTTP, web.json_errors(redirecting)).status == 303


def test_unexpected_errors_become_a_500_without_details(fake_request, caplog):
    fake_request()

    def broken():
        raise KeyError("database password is hunter2")

    with caplog.at_level(logging.ERROR, logger="waddlebot.web"):
        http = _raises(HTTP, web.json_errors(broken))
    assert http.status == 500
    body = json.loads(http.body)
    assert body["error"]["code"] == "internal_error"
    assert "hunter2" not in http.body and "Traceback" not in http.body
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_registered_translators_map_library_errors(fake_request, monkeypatch):
    fake_request()
    monkeypatch.setattr(web, "_translators", [])

    class StoreDown(Exception):
        pass

    web.register_error_translator(
        lambda exc: ServiceUnavailable("store down") if isinstance(exc, StoreDown) else None
    )

    def failing():
        raise StoreDown("redis refused")

    http = _raises(HTTP, web.json_errors(failing))
    assert http.status == 503 and http.headers["Retry-After"] == "5"
    assert _raises(HTTP, web.json_errors(lambda: 1 / 0)).status == 500


# -- json_body ------------------------------------------------------------------------


def test_json_body_object(fake_request):
    fake_request(b'{"platform": "twitch", "n": 1}')
    assert web.json_body() == {"platform": "twitch", "n": 1}


def test_json_body_utf8(fake_request):
    fake_request('{"user_name": "Zoë 🐧"}'.encode())
    assert web.json_body() == {"user_name": "Zoë 🐧"}


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_json_body_required(fake_request, raw):
    fake_request(raw)
    error = _raises(ValidationError, web.json_body)
    assert error.field == "body" and error.status == 400
    fake_request(raw)
    assert web.json_body(required=False) == {}


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"a": 1', b"\xff\xfe\x00garbage", b"{'single': 'quotes'}", b"NaN-ish"]
)
def test_json_body_malformed(fake_request, raw):
    fake_request(raw)
    error = _raises(ValidationError, web.json_body)
    assert error.field == "body" and error.code == "validation_error"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_json_body_must_be_an_object(fake_request, raw):
    fake_request(raw)
    error = _raises(ValidationError, web.json_body)
    assert error.field == "body" and "object" in error.message


def test_json_body_too_large(fake_request):
    payload = b'{"x": "' + b"a" * web.MAX_BODY_BYTES + b'"}'
    fake_request(payload)
    error = _raises(ApiError, web.json_body)
    assert (error.status, error.code, error.field) == (413, "too_large", "body")


def test_json_body_at_the_limit(fake_request):
    filler = web.MAX_BODY_BYTES - len(b'{"x": ""}')
    payload = b'{"x": "' + b"a" * filler + b'"}'
    assert len(payload) == web.MAX_BODY_BYTES
    fake_request(payload)
    assert len(web.json_body()["x"]) == filler


def test_json_body_leaves_the_body_for_later_readers(fake_request):
    fake = fake_request(b'{"a": 1}')
    assert web.json_body() == {"a": 1}
    if fake.environ:  # read from wsgi.input: ombott's cached body holds the same bytes
        assert fake.environ["ombott.request.body"].read() == b'{"a": 1}'
        assert fake.environ["wsgi.input"] is fake.environ["ombott.request.body"]


# -- query parameters and pages -------------------------------------------------------


def test_page_params_defaults(fake_request):
    fake_request()
    assert web.page_params() == (1, 50)
    fake_request(page="", per_page="")
    assert web.page_params() == (1, 50)


def test_page_params_values(fake_request):
    fake_request(page="3", per_page="500")
    assert web.page_params() == (3, 500)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "two"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"per_page": "501"}, "per_page"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "lots"}, "per_page"),
    ],
)
def test_page_params_errors_name_the_parameter(fake_request, query, field):
    fake_request(**query)
    error = _raises(ValidationError, web.page_params)
    assert error.field == field and error.status == 400


def test_query_int_bounds(fake_request):
    fake_request(limit="10")
    assert web.query_int("limit", 5, minimum=1, maximum=10) == 10
    fake_request(limit="11")
    assert (
        "between 1 and 10"
        in _raises(ValidationError, web.query_int, "limit", 5, minimum=1, maximum=10).message
    )
    fake_request(limit="-5")
    assert ">= 0" in _raises(ValidationError, web.query_int, "limit", 5).message
    fake_request()
    assert web.query_int("limit", 5) == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("False", False), ("no", False)],
)
def test_query_bool(fake_request, raw, expected):
    fake_request(active=raw)
    assert web.query_bool("active") is expected


def test_query_bool_absent_and_bad(fake_request):
    fake_request()
    assert web.query_bool("active") is None
    fake_request(active="sometimes")
    assert _raises(ValidationError, web.query_bool, "active").field == "active"


def test_page_of_shape():
    assert web.page_of([1, 2], page=2, per_page=2, total=7) == {
        "items": [1, 2],
        "page": 2,
        "per_page": 2,
        "total": 7,
    }
