"""Outgoing HTTP: one pooled ``requests`` session per process, timeouts always on.

Idempotent methods are retried a bounded number of times with exponential back-off
on connection errors and 502/503/504; POSTs are never retried here (callers that
need it, such as delivery with de-duplication, retry themselves). Failures become
:class:`HttpError` with the status, the URL and, when the peer answered in JSON, its
error body.
"""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 10.0
USER_AGENT = "WaddleBot/1.0"
_local_sessions: dict[tuple, requests.Session] = {}
_lock = threading.Lock()


class HttpError(Exception):
    """A failed outgoing call: connection error, timeout or non-2xx answer."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        body: Any = None,
        timeout: bool = False,
    ):
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body
        self.timeout = timeout

    def to_dict(self) -> dict:
        """JSON form for logs and execution records."""
        return {
            "message": str(self),
            "url": self.url,
            "status": self.status,
            "timeout": self.timeout,
        }


def session(pool_size: int = 50, retries: int = 2, backoff: float = 0.2) -> requests.Session:
    """The shared pooled session for this (pool_size, retries, backoff) combination."""
    key = (pool_size, retries, backoff)
    with _lock:
        existing = _local_sessions.get(key)
        if existing is not None:
            return existing
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=retry)
        created = requests.Session()
        # no proxy/netrc/CA-path lookups from the environment on every call (~25 % of a
        # call's CPU); WaddleBot's outgoing calls are configured through settings only
        created.trust_env = False
        created.mount("http://", adapter)
        created.mount("https://", adapter)
        created.headers["User-Agent"] = USER_AGENT
        _local_sessions[key] = created
        return created


def request_json(
    method: str,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    http: requests.Session | None = None,
    expect_json: bool = True,
    **kwargs,
) -> Any:
    """Call ``url`` and return its decoded JSON (or text); raise HttpError on failure."""
    client = http or session()
    try:
        answer = client.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise HttpError(
            f"{method} {url} timed out after {timeout}s", url=url, timeout=True
        ) from None
    except requests.RequestException as exc:
        raise HttpError(f"{method} {url} failed: {type(exc).__name__}", url=url) from None
    body: Any
    try:
        body = answer.json() if answer.content else None
    except ValueError:
        if expect_json and answer.ok:
            raise HttpError(
                f"{method} {url} answered non-JSON",
                url=url,
                status=answer.status_code,
                body=answer.text[:500],
            ) from None
        body = answer.text[:2000]
    if not answer.ok:
        raise HttpError(
            f"{method} {url} answered {answer.status_code}",
            url=url,
            status=answer.status_code,
            body=body,
        )
    return body


@dataclasses.dataclass(frozen=True, slots=True)
class RawAnswer:
    """Status and body of a call made through :class:`JsonCaller`."""

    status: int
    body: bytes


#: the most an answer's status line and headers, and its body, may take
MAX_ANSWER_HEAD = 64 * 1024
MAX_ANSWER_BODY = 16 * 1024 * 1024


class BadAnswer(Exception):
    """The peer's bytes are not an HTTP/1.x answer we can read."""


class _Closed(Exception):
    """The peer closed the connection before the answer was complete."""


class Wire:
    """One kept HTTP/1.1 connection: its socket and the bytes read past the last answer.

    The request goes out in one ``sendall`` (head and body together: one wake-up of the
    peer, not two as ``http.client`` costs), and the answer is parsed here: status line,
    headers, then a ``Content-Length``, chunked or read-to-close body. ``http.client``
    parsed headers through the ``email`` package, a third of a call's CPU.
    """

    __slots__ = ("sock", "_pending")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._pending = b""

    def close(self) -> None:
        """Close the socket (twice is fine)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def exchange(self, request: bytes, method: str) -> tuple[int, bytes, bool]:
        """Send ``request``; (status, body, whether the connection may carry another)."""
        self.sock.sendall(request)
        while True:
            version, status, headers = self._read_head()
            if status >= 200:
                break
            if status == 101:
                raise BadAnswer("the peer switched protocols")
            # 1xx (100 Continue, 103 Early Hints): the answer is still to come
        connection = headers.get(b"connection", b"").lower()
        if version == b"HTTP/1.1":
            keep = b"close" not in connection
        else:
            keep = b"keep-alive" in connection
        if method == "HEAD" or status in (204, 304):
            return status, b"", keep
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return status, self._read_chunked(), keep
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise BadAnswer(f"bad Content-Length {length[:40]!r}") from None
            if size < 0 or size > MAX_ANSWER_BODY:
                raise BadAnswer(f"Content-Length {size} out of bounds")
            return status, self._read_exact(size), keep
        return status, self._read_to_close(), False

    # -- reading ----------------------------------------------------------------------
    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed()
        return chunk

    def _read_head(self) -> tuple[bytes, int, dict[bytes, bytes]]:
        data = self._pending
        searched = 0
        while True:
            end = data.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                break
            if len(data) > MAX_ANSWER_HEAD:
                raise BadAnswer("answer headers too large")
            searched = len(data)
            data += self._more()
        self._pending = data[end + 4 :]
        lines = data[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise BadAnswer(f"bad status line {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise BadAnswer(f"bad status line {lines[0][:80]!r}") from None
        if not 100 <= status <= 999:
            raise BadAnswer(f"bad status {status}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise BadAnswer(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return parts[0], status, headers

    def _read_exact(self, size: int) -> bytes:
        data = self._pending
        if len(data) < size:
            buffer = bytearray(data)  # grown in place: a large body is not copied per recv
            while len(buffer) < size:
                buffer += self._more()
            data = bytes(buffer)
        self._pending = data[size:]
        return data[:size]

    def _read_line(self) -> bytes:
        data = self._pending
        while True:
            end = data.find(b"\r\n")
            if end >= 0:
                self._pending = data[end + 2 :]
                return data[:end]
            if len(data) > MAX_ANSWER_HEAD:
                raise BadAnswer("chunk line too long")
            data += self._more()

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self._read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadAnswer(f"bad chunk size {line[:40]!r}") from None
            if size < 0 or len(body) + size > MAX_ANSWER_BODY:
                raise BadAnswer("chunked body too large")
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise BadAnswer("chunk not followed by CRLF")

    def _read_to_close(self) -> bytes:
        data = bytearray(self._pending)
        self._pending = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > MAX_ANSWER_BODY:
                raise BadAnswer("body too large")


def _header_line(name: str, value) -> str:
    text = f"{name}: {value}\r\n"
    if "\r" in text[:-2] or "\n" in text[:-2] or not name or ":" in name:
        raise ValueError(f"header {name!r} has a line break or a bad name")
    return text


class JsonCaller:
    """Lean keep-alive JSON calls for hot paths (module calls, collector pushes).

    One :class:`Wire` kept per (scheme, host, port) and idle: no redirects (a redirect
    is an answer like any other), no retries, no environment lookups. A kept
    connection the peer has closed (or written to unasked) is dropped before reuse, as
    urllib3 does; a POST is never sent twice. Connection failures, timeouts and answers
    that are not HTTP become :class:`HttpError` (``timeout=True`` for a timeout).
    """

    def __init__(self, pool_size: int = 50):
        self._pool_size = pool_size
        self._idle: dict[tuple, list[Wire]] = {}
        self._targets: dict[str, tuple] = {}
        self._tls = None

    def _target(self, url: str) -> tuple:
        """(scheme, host, port, path-and-query, Host header) of ``url``, parsed once."""
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError(f"cannot call {url!r}: not an http(s) URL", url=url)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise HttpError(f"cannot call {url!r}: bad port", url=url) from None
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if not path.isascii() or any(c <= " " or c == "\x7f" for c in path):
                raise HttpError(f"cannot call {url!r}: the path must be plain ASCII", url=url)
            host = parts.hostname
            shown = f"[{host}]" if ":" in host else host
            default = 443 if parts.scheme == "https" else 80
            host_header = shown if port == default else f"{shown}:{port}"
            target = (parts.scheme, host, port, path, host_header)
            if len(self._targets) < 10_000:
                self._targets[url] = target
        return target

    def _wire(self, key: tuple, timeout: float) -> Wire:
        idle = self._idle.get(key)
        while idle:
            try:
                wire = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if not wire._pending and not _readable(wire.sock):
                wire.sock.settimeout(timeout)
                return wire
            wire.close()  # closed by the peer, or it sent something unasked
        scheme, host, port = key
        sock = socket.create_connection((host, port), timeout=min(timeout, 5.0))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return Wire(sock)

    def call(
        self,
        method: str,
        url: str,
        *,
        payload: Any = None,
        headers: dict | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RawAnswer:
        """Send ``payload`` as JSON (a query parameter for GET); return status and body."""
        scheme, host, port, path, host_header = self._target(url)
        body = b""
        if method == "GET":
            if payload is not None:
                separator = "&" if "?" in path else "?"
                path = f"{path}{separator}{urlencode({'payload': json.dumps(payload)})}"
        else:
            body = json.dumps(payload if payload is not None else {}).encode()
        head = [
            f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"Accept: application/json\r\nUser-Agent: {USER_AGENT}\r\n"
        ]
        try:
            if headers:
                head.extend(_header_line(str(k), v) for k, v in headers.items())
            if method != "GET":
                head.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
            head.append("\r\n")
            request = "".join(head).encode("latin-1") + body
        except (ValueError, UnicodeEncodeError) as exc:
            raise HttpError(f"{method} {url}: bad request header: {exc}", url=url) from None
        key = (scheme, host, port)
        wire = None
        try:
            wire = self._wire(key, timeout)
            status, data, keep = wire.exchange(request, method)
        except ConnectionRefusedError:
            _close(wire)
            raise HttpError(f"{method} {url} failed: connection refused", url=url) from None
        except TimeoutError:
            _close(wire)
            raise HttpError(
                f"{method} {url} timed out after {timeout:g}s", url=url, timeout=True
            ) from None
        except BadAnswer as exc:
            _close(wire)
            raise HttpError(f"{method} {url} failed: not HTTP ({exc})", url=url) from None
        except (OSError, _Closed) as exc:
            _close(wire)
            why = "closed without an answer" if isinstance(exc, _Closed) else type(exc).__name__
            raise HttpError(f"{method} {url} failed: {why}", url=url) from None
        if keep:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._pool_size:
                idle.append(wire)
            else:
                wire.close()
        else:
            wire.close()
        return RawAnswer(status, data)


def _close(wire: Wire | None) -> None:
    if wire is not None:
        wire.close()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle kept connection has something to read: the peer closed it (EOF)
    or sent data nobody asked for. Either way it cannot carry another request.

    A non-blocking peek answers at once (with a zero timeout even gevent's socket
    raises instead of waiting); TLS sockets take no flags, so they are polled.
    """
    if isinstance(sock, ssl.SSLSocket):
        try:
            poller = select.poll()  # poll, not select: no limit on descriptor numbers
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True
    try:
        sock.settimeout(0.0)
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing waiting: the connection is idle and open
    except OSError:
        return True
    return True  # b"" (closed by the peer) or unasked bytes
