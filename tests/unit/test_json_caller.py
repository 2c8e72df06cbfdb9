"""``waddlebot.http.JsonCaller``: keep-alive JSON calls for module calls and pushes."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from waddlebot.http import HttpError, JsonCaller
from waddlebot.testkit import StubServer, free_port


@pytest.fixture
def stub():
    server = StubServer()
    server.route("POST", r"/echo", lambda request: (201, {"got": request.json}))
    server.route("GET", r"/query", lambda request: {"query": request.query})
    server.route("POST", r"/slow", lambda request: time.sleep(1.0) or {"late": True})
    server.route("POST", r"/moved", (302, b"", {"Location": "http://169.254.169.254/"}))
    yield server
    server.close()


def test_posts_json_and_reuses_the_connection(stub):
    caller = JsonCaller()
    kept = caller._idle.setdefault(("http", "127.0.0.1", stub.port), [])
    used = []
    for number in range(3):
        answer = caller.call("POST", f"{stub.url}/echo", payload={"n": number}, headers={"X": "y"})
        assert answer.status == 201
        assert answer.body == b'{"got": {"n": ' + str(number).encode() + b"}}"
        assert len(kept) == 1
        used.append((kept[0], kept[0].sock.getsockname()))
    assert used[0] == used[1] == used[2]  # one connection, one local port: reused
    sent = stub.received("POST", "/echo")
    assert [r.json for r in sent] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert sent[0].headers["Content-Type"] == "application/json"
    assert sent[0].headers["X"] == "y"


def test_get_sends_the_payload_as_a_query_parameter(stub):
    answer = JsonCaller().call("GET", f"{stub.url}/query?a=1", payload={"k": "v"})
    assert answer.status == 200
    assert stub.received("GET", "/query")[0].query == "a=1&payload=%7B%22k%22%3A+%22v%22%7D"


def test_a_redirect_is_an_answer_not_followed(stub):
    answer = JsonCaller().call("POST", f"{stub.url}/moved", payload={})
    assert answer.status == 302
    assert len(stub.received()) == 1


def test_timeout_refused_and_bad_urls_are_http_errors(stub):
    caller = JsonCaller()
    with pytest.raises(HttpError) as slow:
        caller.call("POST", f"{stub.url}/slow", payload={}, timeout=0.2)
    assert slow.value.timeout
    with pytest.raises(HttpError, match="connection refused") as refused:
        caller.call("POST", f"http://127.0.0.1:{free_port()}/x", payload={})
    assert not refused.value.timeout
    with pytest.raises(HttpError, match="not an http"):
        caller.call("POST", "ftp://example.org/x", payload={})
    # the caller still works after failures
    assert caller.call("POST", f"{stub.url}/echo", payload={}).status == 201


def test_a_connection_the_peer_closed_is_not_reused():
    """A server that answers keep-alive and then closes idle connections (as servers do
    after their keep-alive timeout): the next call opens a new connection, no error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            body = b'{"ok": true}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            conn.close()  # without saying Connection: close

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        caller = JsonCaller()
        for _ in range(3):
            assert caller.call("POST", f"http://127.0.0.1:{port}/x", payload={}).body == (
                b'{"ok": true}'
            )
            time.sleep(0.05)  # the close reaches us before the next call
        assert len(accepted) == 3  # each call on a fresh connection, none failed
    finally:
        listener.close()
