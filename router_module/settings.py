"""Settings of the router, read once from the environment at import (spec names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from waddlebot.settings import CommonSettings, Env, Secret, common_fields


@dataclasses.dataclass(frozen=True)
class Settings(CommonSettings):
    """Router settings: sessions, workers, caches, rate limits, execution engines."""

    session_ttl: int
    session_prefix: str
    max_workers: int
    max_concurrent: int
    router_request_timeout: float
    default_rate_limit: int
    command_cache_ttl: float
    entity_cache_ttl: float
    dedupe_window: int
    aws_region: str
    aws_access_key_id: Secret
    aws_secret_access_key: Secret
    aws_endpoint_url_lambda: str | None
    lambda_function_prefix: str
    openwhisk_api_host: str | None
    openwhisk_auth_key: Secret
    openwhisk_namespace: str


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings; a bad variable raises SettingsError naming it."""
    env = Env(environ)
    return Settings(
        **common_fields(env, module_name="router"),
        session_ttl=env.int("SESSION_TTL", 3600, minimum=1),
        session_prefix=env.str("SESSION_PREFIX", "waddlebot:session:"),
        max_workers=env.int("ROUTER_MAX_WORKERS", 20, minimum=1),
        max_concurrent=env.int("ROUTER_MAX_CONCURRENT", 100, minimum=1),
        router_request_timeout=env.float("ROUTER_REQUEST_TIMEOUT", 30.0, minimum=0.1),
        default_rate_limit=env.int("ROUTER_DEFAULT_RATE_LIMIT", 60, minimum=1),
        command_cache_ttl=env.float("ROUTER_COMMAND_CACHE_TTL", 300.0, minimum=0),
        entity_cache_ttl=env.float("ROUTER_ENTITY_CACHE_TTL", 600.0, minimum=0),
        dedupe_window=env.int("ROUTER_DEDUPE_WINDOW", 600, minimum=1),
        aws_region=env.str("AWS_REGION", "us-east-1"),
        aws_access_key_id=env.secret("AWS_ACCESS_KEY_ID", ""),
        aws_secret_access_key=env.secret("AWS_SECRET_ACCESS_KEY", ""),
        aws_endpoint_url_lambda=env.str("AWS_ENDPOINT_URL_LAMBDA", None),
        lambda_function_prefix=env.str("LAMBDA_FUNCTION_PREFIX", "waddlebot-"),
        openwhisk_api_host=env.str("OPENWHISK_API_HOST", None),
        openwhisk_auth_key=env.secret("OPENWHISK_AUTH_KEY", ""),
        openwhisk_namespace=env.str("OPENWHISK_NAMESPACE", "waddlebot"),
    )


settings = load()
