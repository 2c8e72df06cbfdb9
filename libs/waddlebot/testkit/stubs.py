"""Local HTTP servers that stand in for outside services and modules.

:class:`StubServer` records every request and answers through handlers registered per
method and path pattern. :func:`lambda_stub` speaks the AWS Lambda Invoke API (so boto3
runs unchanged against ``AWS_ENDPOINT_URL_LAMBDA``); :func:`openwhisk_stub` speaks the
OpenWhisk actions API with basic auth.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Recorded:
    """One request the stub received."""

    method: str
    path: str
    query: str
    headers: dict
    body: bytes
    match: dict = dataclasses.field(default_factory=dict)

    @property
    def json(self) -> Any:
        """The body decoded as JSON (None when empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


Handler = Callable[[Recorded], Any]


class StubServer:
    """A threaded HTTP server on 127.0.0.1 with programmable answers."""

    def __init__(self, port: int = 0):
        self.requests: list[Recorded] = []
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                return

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                record = Recorded(self.command, path, query, dict(self.headers.items()), body)
                status, payload, headers = stub._dispatch(record)
                with stub._lock:
                    stub.requests.append(record)
                    stub._changed.notify_all()
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(payload, str):
                    data = payload.encode()
                    headers.setdefault("Content-Type", "text/plain")
                else:
                    data = payload or b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, method: str, pattern: str, handler: Handler | Any) -> None:
        """Answer ``method`` on paths fully matching ``pattern``; later routes win."""
        answer = handler if callable(handler) else (lambda _request, value=handler: value)
        with self._lock:
            self._routes.insert(0, (method.upper(), re.compile(pattern), answer))

    def _dispatch(self, record: Recorded) -> tuple[int, Any, dict]:
        with self._lock:
            routes = list(self._routes)
        for method, pattern, handler in routes:
            found = pattern.fullmatch(record.path)
            if method == record.method and found:
                record.match = found.groupdict()
                result = handler(record)
                if isinstance(result, tuple):
                    status, payload, *rest = result
                    return status, payload, dict(rest[0]) if rest else {}
                return 200, result, {}
        return 404, {"error": "no stub route"}, {}

    def received(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """Requests received so far, optionally filtered by method and path regex."""
        with self._lock:
            items = list(self.requests)
        return [
            r
            for r in items
            if (method is None or r.method == method)
            and (path is None or re.fullmatch(path, r.path))
        ]

    def wait_for(
        self,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        timeout: float = 5.0,
    ) -> list[Recorded]:
        """Wait until ``count`` matching requests arrived; returns them (fails on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(method, path)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"expected {count} requests to {method} {path}, got {len(found)}"
                )
            with self._lock:
                self._changed.wait(min(remaining, 0.1))

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def lambda_stub(functions: dict[str, Callable[[dict], Any]]) -> StubServer:
    """A Lambda Invoke API server running ``functions[name](payload)`` in-process.

    A handler that raises becomes a function error (``X-Amz-Function-Error``), as
    Lambda reports an unhandled exception.
    """
    stub = StubServer()

    def invoke(request: Recorded):
        name = request.match["name"]
        function = functions.get(name)
        if function is None:
            return (
                404,
                {"Type": "User", "message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        try:
            result = function(request.json or {})
        except Exception as exc:  # noqa: BLE001 - reported like Lambda does
            return (
                200,
                {"errorMessage": str(exc), "errorType": type(exc).__name__},
                {"X-Amz-Function-Error": "Unhandled"},
            )
        return 200, result, {"X-Amz-Executed-Version": "$LATEST"}

    stub.route("POST", r"/2015-03-31/functions/(?P<name>[^/]+)/invocations", invoke)
    return stub


def openwhisk_stub(
    actions: dict[str, Callable[[dict], Any]], *, namespace: str, auth_key: str
) -> StubServer:
    """An OpenWhisk REST server for blocking action invocations with basic auth."""
    stub = StubServer()
    expected = "Basic " + base64.b64encode(auth_key.encode()).decode()

    def invoke(request: Recorded):
        if request.headers.get("Authorization") != expected:
            return 401, {"error": "The supplied authentication is invalid"}
        if request.match["namespace"] != namespace:
            return 404, {"error": "namespace not found"}
        action = actions.get(request.match["name"])
        if action is None:
            return 404, {"error": "The requested resource does not exist."}
        if "blocking=true" not in request.query:
            return 202, {"activationId": "not-blocking"}
        return 200, action(request.json or {})

    stub.route("POST", r"/api/v1/namespaces/(?P<namespace>[^/]+)/actions/(?P<name>[^/]+)", invoke)
    return stub
