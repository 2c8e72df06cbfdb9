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


class ScriptedPeer:
    """A raw TCP peer: reads one request per connection turn and answers with the bytes
    the test scripted, so answers http.server would never send can be tried."""

    def __init__(self, answers: list[bytes], *, close_after: bool = False):
        self.answers = list(answers)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.reads_per_request: list[int] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                while self.answers:
                    data, reads = b"", 0
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data, reads = data + chunk, reads + 1
                    if not data:
                        break
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(body) < length:
                        body += conn.recv(65536)
                        reads += 1
                    self.requests.append(head + b"\r\n\r\n" + body)
                    self.reads_per_request.append(reads)
                    conn.sendall(self.answers.pop(0))
                    if self.close_after:
                        break

    def close(self):
        self.listener.close()


def test_the_request_goes_out_in_one_write_with_its_headers():
    peer = ScriptedPeer([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
    try:
        answer = JsonCaller().call(
            "POST", f"{peer.url}/run?x=1", payload={"n": 1}, headers={"X-API-Key": "k"}
        )
    finally:
        peer.close()
    assert (answer.status, answer.body) == (200, b"{}")
    head, _, body = peer.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /run?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{peer.port}".encode() in lines
    assert b"X-API-Key: k" in lines and b"Content-Type: application/json" in lines
    assert b"Content-Length: 8" in lines and body == b'{"n": 1}'
    assert peer.reads_per_request == [1]  # head and body in one segment


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        # chunked, with a chunk extension and a trailer
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4;ext=1\r\n{"a"\r\n4\r\n: 1}\r\n0\r\nX-Trailer: t\r\n\r\n',
            b'{"a": 1}',
        ),
        # 100 Continue first, then the answer
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", b"[]"),
        # no length: the body runs to the close
        (b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"end": 1}', b'{"end": 1}'),
        # no body by definition
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
def test_answers_of_every_framing_are_read(answer, body):
    peer = ScriptedPeer([answer], close_after=True)
    try:
        got = JsonCaller().call("POST", f"{peer.url}/x", payload={})
    finally:
        peer.close()
    assert got.body == body


def test_a_kept_connection_carries_the_next_call_after_a_chunked_answer():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    plain = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n[]"
    peer = ScriptedPeer([chunked, plain])
    try:
        caller = JsonCaller()
        first = caller.call("POST", f"{peer.url}/x", payload={})
        second = caller.call("POST", f"{peer.url}/x", payload={})
    finally:
        peer.close()
    assert (first.status, first.body, second.status, second.body) == (200, b"{}", 201, b"[]")
    assert len(peer.requests) == 2


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "out of bounds"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "closed without an answer"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    ],
)
def test_garbage_and_truncated_answers_are_http_errors(answer, why):
    peer = ScriptedPeer([answer], close_after=True)
    try:
        with pytest.raises(HttpError, match=why) as failed:
            JsonCaller().call("POST", f"{peer.url}/x", payload={}, timeout=2)
    finally:
        peer.close()
    assert not failed.value.timeout


def test_header_injection_and_non_ascii_paths_are_refused_before_sending(stub):
    caller = JsonCaller()
    with pytest.raises(HttpError, match="bad request header"):
        caller.call("POST", f"{stub.url}/echo", payload={}, headers={"X": "a\r\nEvil: 1"})
    with pytest.raises(HttpError, match="plain ASCII"):
        caller.call("POST", f"{stub.url}/ech o", payload={})
    with pytest.raises(HttpError, match="plain ASCII"):
        caller.call("POST", f"{stub.url}/é", payload={})
    assert stub.received() == []


GEVENT_REUSE = r"""
from gevent import monkey
monkey.patch_all()
import json, socket, sys, threading, time
from waddlebot.http import JsonCaller

listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
accepted = []

def serve():
    while True:
        conn, _ = listener.accept()
        accepted.append(conn)
        threading.Thread(target=answer, args=(conn, len(accepted) == 1), daemon=True).start()

def answer(conn, close_after_first):
    while True:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        if close_after_first:
            conn.close()
            return

threading.Thread(target=serve, daemon=True).start()
caller = JsonCaller()
started = time.monotonic()
bodies = []
for _ in range(4):
    bodies.append(caller.call("POST", f"http://127.0.0.1:{port}/x", payload={}, timeout=3).body)
    time.sleep(0.05)
print(json.dumps({"seconds": time.monotonic() - started, "connections": len(accepted),
                  "bodies": [b.decode() for b in bodies]}))
"""


def test_under_gevent_the_idle_check_neither_waits_nor_reuses_a_closed_connection():
    """The check of a kept connection must not wait out the socket timeout under gevent
    (its socket waits on a would-block read unless the timeout is zero)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", GEVENT_REUSE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["bodies"] == ["{}"] * 4
    # the first connection was closed by the peer after one answer: one new connection,
    # then reused for the remaining calls
    assert result["connections"] == 2
    assert result["seconds"] < 1.5  # four calls and 0.2 s of sleeps, no 3 s timeouts
