"""Outgoing HTTP: one pooled ``requests`` session per process, timeouts always on.

Idempotent methods are retried a bounded number of times with exponential back-off
on connection errors and 502/503/504; POSTs are never retried here (callers that
need it, such as delivery with de-duplication, retry themselves). Failures become
:class:`HttpError` with the status, the URL and, when the peer answered in JSON, its
error body.
"""

from __future__ import annotations

import dataclasses
import http.client
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


class JsonCaller:
    """Lean keep-alive JSON calls for hot paths (module calls, collector pushes).

    ``http.client`` connections kept per (scheme, host, port): no redirects (a redirect
    is an answer like any other), no retries, no environment lookups — about half the
    CPU of an urllib3 call and a fraction of a ``requests`` one. A kept connection the
    peer has closed (or written to unasked) is dropped before reuse, as urllib3 does;
    a POST is never sent twice. Connection failures and timeouts become
    :class:`HttpError` (``timeout=True`` for the latter).
    """

    def __init__(self, pool_size: int = 50):
        self._pool_size = pool_size
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._targets: dict[str, tuple] = {}
        self._tls = None

    def _target(self, url: str) -> tuple:
        """(scheme, host, port, path-and-query) of ``url``, parsed once per URL."""
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError(f"cannot call {url!r}: not an http(s) URL", url=url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = (parts.scheme, parts.hostname, port, path)
            if len(self._targets) < 10_000:
                self._targets[url] = target
        return target

    def _connection(self, key: tuple, timeout: float) -> http.client.HTTPConnection:
        idle = self._idle.get(key)
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            sock = connection.sock
            if sock is not None and not _readable(sock):
                sock.settimeout(timeout)
                return connection
            connection.close()  # closed by the peer, or it sent something unasked
        scheme, host, port = key
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return http.client.HTTPSConnection(
                host, port, timeout=min(timeout, 5.0), context=self._tls
            )
        return http.client.HTTPConnection(host, port, timeout=min(timeout, 5.0))

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
        scheme, host, port, path = self._target(url)
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        body = None
        if method == "GET":
            if payload is not None:
                separator = "&" if "?" in path else "?"
                path = f"{path}{separator}{urlencode({'payload': json.dumps(payload)})}"
        else:
            body = json.dumps(payload if payload is not None else {}).encode()
            sent["Content-Type"] = "application/json"
        key = (scheme, host, port)
        connection = self._connection(key, timeout)
        try:
            if connection.sock is None:
                connection.connect()
                connection.sock.settimeout(timeout)
            connection.request(method, path, body, sent)
            answer = connection.getresponse()
            data = answer.read()
        except ConnectionRefusedError:
            connection.close()
            raise HttpError(f"{method} {url} failed: connection refused", url=url) from None
        except TimeoutError:
            connection.close()
            raise HttpError(
                f"{method} {url} timed out after {timeout:g}s", url=url, timeout=True
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise HttpError(f"{method} {url} failed: {type(exc).__name__}", url=url) from None
        if answer.will_close:
            connection.close()
        else:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._pool_size:
                idle.append(connection)
            else:
                connection.close()
        return RawAnswer(answer.status, data)


def _readable(sock: socket.socket) -> bool:
    """Whether an idle kept connection has something to read: the peer closed it (EOF)
    or sent data nobody asked for. Either way it cannot carry another request."""
    try:
        poller = select.poll()  # poll, not select: no limit on descriptor numbers
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
