"""Execution engines: where a command runs (DESIGN §8 ``location_url``).

* ``container`` — HTTP to the module (absolute URL, or a path joined to its endpoint);
* ``lambda`` — boto3 ``invoke`` (``AWS_ENDPOINT_URL_LAMBDA`` honoured);
* ``openwhisk`` — the OpenWhisk REST API, blocking, basic auth;
* ``webhook`` — HTTP with the command's method and headers, guarded against private
  networks on the resolved address, redirects not followed.

Every call has the command's timeout. Failures are values (:class:`CallResult`), never
exceptions, so a module that is down, slow or answering garbage cannot hurt the router.
Per-module concurrency is bounded so one slow module cannot take every worker.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from typing import Any
from urllib.parse import quote

from waddlebot.http import HttpError, JsonCaller
from waddlebot.netguard import check_url
from waddlebot.web import ValidationError

from .registry import Command


@dataclasses.dataclass(slots=True)
class CallResult:
    """Outcome of one module call."""

    status: str  # success | failed | timeout | busy
    http_status: int | None = None
    data: Any = None
    error: str | None = None
    elapsed_ms: int = 0


class ExecutionEngines:
    """Dispatch a module call to the right engine with bounded concurrency per module."""

    def __init__(self, settings, *, per_module_limit: int):
        self.settings = settings
        self.per_module_limit = per_module_limit
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._lambda_client = None
        self._caller = JsonCaller(pool_size=max(10, settings.max_workers * 2))

    def _semaphore(self, module: str) -> threading.BoundedSemaphore:
        with self._lock:
            semaphore = self._semaphores.get(module)
            if semaphore is None:
                semaphore = threading.BoundedSemaphore(self.per_module_limit)
                self._semaphores[module] = semaphore
            return semaphore

    def call(self, command: Command, payload: dict) -> CallResult:
        """Run ``command`` with ``payload``; always returns a CallResult."""
        timeout = min(float(command.timeout), self.settings.router_request_timeout)
        semaphore = self._semaphore(command.module_name)
        started = time.perf_counter()
        if not semaphore.acquire(timeout=min(1.0, timeout)):
            return CallResult("busy", error=f"module {command.module_name} is busy")
        try:
            handler = getattr(self, f"_call_{command.type}")
            result = handler(command, payload, timeout)
        except ValidationError as exc:
            result = CallResult("failed", error=exc.message)
        except Exception as exc:  # noqa: BLE001 - an engine failure is a failed execution
            result = CallResult("failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            semaphore.release()
        result.elapsed_ms = int((time.perf_counter() - started) * 1000)
        return result

    # -- HTTP engines -----------------------------------------------------------------
    def _container_url(self, command: Command) -> str:
        location = command.location_url or ""
        if location.startswith(("http://", "https://")):
            return location
        if not command.module_endpoint:
            raise ValidationError(f"module {command.module_name} has no endpoint_url")
        return f"{command.module_endpoint.rstrip('/')}/{location.lstrip('/')}"

    def _http(
        self, method: str, url: str, payload: dict, headers: dict, timeout: float
    ) -> CallResult:
        try:
            answer = self._caller.call(
                method, url, payload=payload, headers=headers, timeout=timeout
            )
        except HttpError as exc:
            if exc.timeout:
                return CallResult("timeout", error=f"no answer within {timeout:g}s")
            return CallResult("failed", error="cannot reach module: connection failed")
        try:
            data = json.loads(answer.body) if answer.body.strip() else {}
        except ValueError:
            return CallResult(
                "failed",
                http_status=answer.status,
                error=f"module answered {answer.status} with non-JSON body",
            )
        if answer.status >= 300:
            return CallResult(
                "failed",
                http_status=answer.status,
                data=data,
                error=f"module answered HTTP {answer.status}",
            )
        return CallResult("success", http_status=answer.status, data=data)

    def _call_container(self, command: Command, payload: dict, timeout: float) -> CallResult:
        headers = {"X-API-Key": self.settings.api_keys[0].reveal(), **command.headers}
        return self._http(command.method, self._container_url(command), payload, headers, timeout)

    def _call_webhook(self, command: Command, payload: dict, timeout: float) -> CallResult:
        url = check_url(
            command.location_url,
            resolve=True,
            field="location_url",
            allow_private=self.settings.webhook_allow_private_networks,
        )
        return self._http(command.method, url, payload, dict(command.headers), timeout)

    def _call_openwhisk(self, command: Command, payload: dict, timeout: float) -> CallResult:
        host = self.settings.openwhisk_api_host
        if not host:
            return CallResult("failed", error="OPENWHISK_API_HOST is not configured")
        base = host if host.startswith(("http://", "https://")) else f"https://{host}"
        name = quote(command.location_url or command.command, safe="")
        namespace = quote(self.settings.openwhisk_namespace, safe="")
        url = (
            f"{base.rstrip('/')}/api/v1/namespaces/{namespace}/actions/{name}"
            "?blocking=true&result=true"
        )
        auth_key = self.settings.openwhisk_auth_key.reveal()
        headers = {}
        if auth_key:
            token = base64.b64encode(auth_key.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return self._http("POST", url, payload, headers, timeout)

    # -- Lambda -----------------------------------------------------------------------
    def _lambda(self):
        with self._lock:
            if self._lambda_client is None:
                import boto3
                from botocore.config import Config

                settings = self.settings
                self._lambda_client = boto3.client(
                    "lambda",
                    region_name=settings.aws_region,
                    endpoint_url=settings.aws_endpoint_url_lambda,
                    aws_access_key_id=settings.aws_access_key_id.reveal() or None,
                    aws_secret_access_key=settings.aws_secret_access_key.reveal() or None,
                    config=Config(
                        retries={"max_attempts": 1, "mode": "standard"},
                        max_pool_connections=max(10, settings.max_workers),
                        connect_timeout=2,
                        read_timeout=settings.router_request_timeout,
                    ),
                )
            return self._lambda_client

    def _call_lambda(self, command: Command, payload: dict, timeout: float) -> CallResult:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        location = command.location_url or command.command
        name = (
            location
            if location.startswith("arn:")
            else (f"{self.settings.lambda_function_prefix}{location}")
        )
        outcome: dict = {}

        def invoke():
            try:
                outcome["answer"] = self._lambda().invoke(
                    FunctionName=name,
                    InvocationType="RequestResponse",
                    Payload=json.dumps(payload).encode(),
                )
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        worker = threading.Thread(target=invoke, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return CallResult("timeout", error=f"lambda {name} gave no answer within {timeout:g}s")
        error = outcome.get("error")
        if isinstance(error, (ReadTimeoutError, ConnectTimeoutError)):
            return CallResult("timeout", error=f"lambda {name} timed out")
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "ClientError")
            return CallResult("failed", error=f"lambda {name}: {code}")
        if isinstance(error, BotoCoreError):
            return CallResult("failed", error=f"lambda {name}: {type(error).__name__}")
        if error is not None:
            return CallResult("failed", error=f"lambda {name}: {type(error).__name__}")
        answer = outcome["answer"]
        raw = answer["Payload"].read()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return CallResult(
                "failed", http_status=answer.get("StatusCode"), error="lambda answered non-JSON"
            )
        if answer.get("FunctionError"):
            message = data.get("errorMessage") if isinstance(data, dict) else None
            return CallResult(
                "failed",
                http_status=answer.get("StatusCode"),
                data=data,
                error=f"lambda {name} failed: {message or answer['FunctionError']}",
            )
        if isinstance(data, dict) and isinstance(data.get("body"), str) and "statusCode" in data:
            # API-Gateway style answers wrap the JSON body as a string
            try:
                data = json.loads(data["body"])
            except ValueError:
                return CallResult("failed", error="lambda body is not JSON")
        return CallResult("success", http_status=answer.get("StatusCode"), data=data)
