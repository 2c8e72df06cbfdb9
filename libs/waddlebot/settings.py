"""Settings read from the environment once, validated, frozen.

Every app builds one frozen settings object in its own ``settings.py`` from
:class:`Env`. Values that are secret are wrapped in :class:`Secret` so they never
appear in a repr, a log line or a traceback. A required variable that is missing
or malformed raises :class:`SettingsError` naming the variable, and the app
refuses to start.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(RuntimeError):
    """A required environment variable is missing or has a bad value."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class Secret:
    """A string whose value is redacted in repr/str; call ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (only where it is actually needed)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


class Env:
    """Typed reader over an environment mapping; every error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: str, default):
        value = self._environ.get(name)
        if value is None or value == "":
            if default is _MISSING:
                raise SettingsError(name, "is required but not set")
            return default
        return value

    def str(self, name: str, default=_MISSING):
        """A plain string."""
        return self._raw(name, default)

    def secret(self, name: str, default=_MISSING) -> Secret:
        """A secret string, redacted in repr."""
        value = self._raw(name, default)
        return value if isinstance(value, Secret) else Secret(value or "")

    def int(self, name: str, default=_MISSING, *, minimum: int | None = None):
        """An integer, optionally bounded below."""
        value = self._raw(name, default)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(name, f"must be an integer, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(name, f"must be >= {minimum}, got {number}")
        return number

    def float(self, name: str, default=_MISSING, *, minimum: float | None = None):
        """A float, optionally bounded below."""
        value = self._raw(name, default)
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SettingsError(name, f"must be a number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(name, f"must be >= {minimum}, got {number}")
        return number

    def bool(self, name: str, default=_MISSING) -> bool:
        """A boolean written as true/false, yes/no, on/off or 1/0."""
        value = self._raw(name, default)
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, f"must be true or false, got {value!r}")

    def list(self, name: str, default=_MISSING) -> tuple[str, ...]:
        """A comma-separated list; blanks dropped."""
        value = self._raw(name, default)
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return tuple(part.strip() for part in str(value).split(",") if part.strip())

    def choice(self, name: str, choices: tuple[str, ...], default=_MISSING) -> str:
        """One of a fixed set of strings."""
        value = self._raw(name, default)
        if value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """Settings every app shares: identity, database, store, service keys, logging."""

    module_name: str
    module_version: str
    data_dir: Path
    database_url: Secret
    read_replica_url: Secret
    db_pool_size: int
    migrate: bool
    redis_host: str | None
    redis_port: int
    redis_password: Secret
    redis_db: int
    store_prefix: str
    api_keys: tuple[Secret, ...]
    router_api_url: str
    public_base_url: str
    request_timeout: float
    log_level: str
    webhook_allow_private_networks: bool

    @property
    def is_embedded(self) -> bool:
        """True when running on the embedded SQLite database."""
        return self.database_url.reveal().startswith("sqlite:")


def common_fields(env: Env, *, module_name: str, module_version: str = "1.0.0") -> dict:
    """Read the shared variables; app settings add their own on top."""
    data_dir = Path(env.str("WADDLEBOT_DATA_DIR", ".data")).resolve()
    database_url = env.secret("DATABASE_URL", f"sqlite://{data_dir / 'waddlebot.sqlite'}")
    api_keys = tuple(Secret(k) for k in env.list("WADDLEBOT_API_KEYS"))
    if not api_keys:
        raise SettingsError("WADDLEBOT_API_KEYS", "must list at least one key")
    public = env.str("WADDLEBOT_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    return dict(
        module_name=env.str("MODULE_NAME", module_name),
        module_version=env.str("MODULE_VERSION", module_version),
        data_dir=data_dir,
        database_url=database_url,
        read_replica_url=env.secret("READ_REPLICA_URL", ""),
        db_pool_size=env.int("DB_POOL_SIZE", 10, minimum=0),
        migrate=env.bool("WADDLEBOT_MIGRATE", False),
        redis_host=env.str("REDIS_HOST", None),
        redis_port=env.int("REDIS_PORT", 6379, minimum=1),
        redis_password=env.secret("REDIS_PASSWORD", ""),
        redis_db=env.int("REDIS_DB", 0, minimum=0),
        store_prefix=env.str("WADDLEBOT_STORE_PREFIX", "waddlebot:"),
        api_keys=api_keys,
        router_api_url=env.str("ROUTER_API_URL", public).rstrip("/"),
        public_base_url=public,
        request_timeout=env.float("REQUEST_TIMEOUT", 30.0, minimum=0.1),
        log_level=env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO"),
        webhook_allow_private_networks=env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False),
    )


def load_common(environ: Mapping[str, str] | None = None, **identity) -> CommonSettings:
    """Build the shared settings alone (apps without settings of their own)."""
    return CommonSettings(**common_fields(Env(environ), **identity))
