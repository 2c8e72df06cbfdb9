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
import threading
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 10.0
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
        created.headers["User-Agent"] = "WaddleBot/1.0"
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

    urllib3 directly: no redirects, no retries, no environment lookups — a fraction of
    the CPU a ``requests`` call costs. Connection failures and timeouts become
    :class:`HttpError` (``timeout=True`` for the latter).
    """

    def __init__(self, pool_size: int = 50):
        self._pool = urllib3.PoolManager(
            num_pools=100, maxsize=pool_size, block=False, retries=False
        )

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
        sent = {"Accept": "application/json", **(headers or {})}
        body = None
        if method == "GET":
            if payload is not None:
                separator = "&" if "?" in url else "?"
                url = f"{url}{separator}{urlencode({'payload': json.dumps(payload)})}"
        else:
            body = json.dumps(payload if payload is not None else {}).encode()
            sent["Content-Type"] = "application/json"
        try:
            answer = self._pool.request(
                method,
                url,
                body=body,
                headers=sent,
                redirect=False,
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            )
        except urllib3.exceptions.NewConnectionError:
            # checked first: urllib3 2 makes a refused connection a ConnectTimeoutError too
            raise HttpError(f"{method} {url} failed: connection refused", url=url) from None
        except urllib3.exceptions.TimeoutError:
            raise HttpError(
                f"{method} {url} timed out after {timeout:g}s", url=url, timeout=True
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise HttpError(f"{method} {url} failed: {type(exc).__name__}", url=url) from None
        return RawAnswer(answer.status, answer.data)
