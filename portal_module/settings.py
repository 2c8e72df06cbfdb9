"""Settings of the portal app, read once from the environment at import.

Mail goes out through SMTP when ``SMTP_HOST`` is set, otherwise through the local
``sendmail`` (the spec's fallback). In the embedded default (SQLite, no ``SMTP_HOST``)
or when ``PORTAL_MAIL_DIR`` is set, each mail is written as an ``.eml`` file instead,
so a newcomer can read the temporary password without a mail server.
``PORTAL_MAIL_TRANSPORT`` (smtp, sendmail, files) overrides that choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

from waddlebot.settings import CommonSettings, Env, Secret, SettingsError, common_fields

MAIL_TRANSPORTS = ("smtp", "sendmail", "files")


@dataclasses.dataclass(frozen=True)
class Settings(CommonSettings):
    """Portal settings: mail, the login session, neighbouring modules, overlay streams."""

    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_password: Secret
    smtp_tls: bool
    from_email: str
    mail_transport: str
    mail_dir: Path
    sendmail_path: str
    session_secret: Secret
    login_expiration: int
    endpoint_url: str
    alias_api_url: str
    shoutout_api_url: str
    overlay_stream_seconds: float
    overlay_heartbeat_seconds: float
    overlay_retry_ms: int

    @property
    def portal_url(self) -> str:
        """The public address of the portal pages."""
        return f"{self.public_base_url}/portal"


def _session_secret(env: Env, api_keys: tuple[Secret, ...]) -> Secret:
    """``PORTAL_SESSION_SECRET``, else a key derived from the first service key.

    Every replica of the portal must sign cookies with the same secret; deriving it
    from the shared service key keeps logins valid across restarts and replicas
    without one more variable to set, and never reuses the service key itself.
    """
    configured = env.secret("PORTAL_SESSION_SECRET", "")
    if configured:
        return configured
    digest = hmac.new(
        api_keys[0].reveal().encode(), b"waddlebot-portal-session", hashlib.sha256
    ).hexdigest()
    return Secret(digest)


def _mail_transport(env: Env, *, smtp_host: str | None, embedded: bool) -> str:
    explicit = env.str("PORTAL_MAIL_TRANSPORT", None)
    if explicit is not None:
        return env.choice("PORTAL_MAIL_TRANSPORT", MAIL_TRANSPORTS)
    if smtp_host:
        return "smtp"
    if env.str("PORTAL_MAIL_DIR", None) or embedded:
        return "files"
    return "sendmail"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings; a bad variable raises SettingsError naming it."""
    env = Env(environ)
    common = common_fields(env, module_name="portal")
    smtp_host = env.str("SMTP_HOST", None)
    embedded = common["database_url"].reveal().startswith("sqlite:")
    transport = _mail_transport(env, smtp_host=smtp_host, embedded=embedded)
    if transport == "smtp" and not smtp_host:
        raise SettingsError("SMTP_HOST", "is required when PORTAL_MAIL_TRANSPORT is smtp")
    heartbeat = env.float("PORTAL_OVERLAY_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
    return Settings(
        **common,
        smtp_host=smtp_host,
        smtp_port=env.int("SMTP_PORT", 587, minimum=1),
        smtp_username=env.str("SMTP_USERNAME", None),
        smtp_password=env.secret("SMTP_PASSWORD", ""),
        smtp_tls=env.bool("SMTP_TLS", True),
        from_email=env.str("FROM_EMAIL", "noreply@waddlebot.local"),
        mail_transport=transport,
        mail_dir=Path(env.str("PORTAL_MAIL_DIR", str(common["data_dir"] / "mail"))).resolve(),
        sendmail_path=env.str("SENDMAIL_PATH", "/usr/sbin/sendmail"),
        session_secret=_session_secret(env, common["api_keys"]),
        login_expiration=env.int("PORTAL_LOGIN_EXPIRATION", 3600, minimum=60),
        endpoint_url=env.str("PORTAL_ENDPOINT_URL", common["public_base_url"]).rstrip("/"),
        alias_api_url=env.str("ALIAS_API_URL", common["router_api_url"]).rstrip("/"),
        shoutout_api_url=env.str("SHOUTOUT_API_URL", common["router_api_url"]).rstrip("/"),
        overlay_stream_seconds=env.float("PORTAL_OVERLAY_STREAM_SECONDS", 300.0, minimum=1.0),
        overlay_heartbeat_seconds=heartbeat,
        overlay_retry_ms=env.int("PORTAL_OVERLAY_RETRY_MS", 2000, minimum=100),
    )


settings = load()
