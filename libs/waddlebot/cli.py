"""The ``waddlebot`` command: ``up`` (the whole fleet locally), ``migrate`` and ``chat``.

``waddlebot up`` runs every app in one process on 127.0.0.1 with the embedded SQLite
database and in-process store unless ``DATABASE_URL`` / ``REDIS_HOST`` say otherwise,
seeds the demo community and prints where everything is. ``waddlebot chat`` is the
console collector (DESIGN §7): it registers a local listener with the router, sends
each typed line as a chat event and prints the replies the router pushes back.

This module configures the process environment for the apps it starts (data folder,
service key, local URLs) before any app is imported; the pure helpers
(:func:`env_defaults`, :func:`resolve_chat_key`, :func:`format_reply` ...) are
separate so they can be tested without a server.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = ".data"
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
API_KEY_FILE = "api_key"
DEMO_ENTITY = "console:demo:demo"
#: seconds without a new reply, after the last reply, before ``chat`` stops at end of input
REPLY_QUIET_SECONDS = 1.0


class CliError(Exception):
    """A failure reported as one ``error: ...`` line on stderr and exit code 1."""


# -- environment and keys (pure helpers) ---------------------------------------------------


def data_dir_path(value: str | None, environ: Mapping[str, str]) -> Path:
    """The absolute data folder: ``--data-dir``, else ``WADDLEBOT_DATA_DIR``, else ``.data``."""
    chosen = value or environ.get("WADDLEBOT_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def base_url(host: str, port: int) -> str:
    """The local URL of a listener; wildcard addresses become the loopback address."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def read_api_key(data_dir: Path) -> str | None:
    """The dev key stored in ``<data-dir>/api_key``, or None."""
    try:
        key = (data_dir / API_KEY_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return key or None


def read_or_create_api_key(data_dir: Path) -> tuple[str, bool]:
    """The dev key of this data folder, generated (mode 0600) on first use; (key, created)."""
    existing = read_api_key(data_dir)
    if existing:
        return existing, False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path = data_dir / API_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    return key, True


def first_key(value: str | None) -> str | None:
    """The first key of a comma-separated key list, or None."""
    for part in (value or "").split(","):
        if part.strip():
            return part.strip()
    return None


def env_defaults(
    environ: Mapping[str, str],
    *,
    data_dir: Path,
    local_url: str | None = None,
    api_key: str | None = None,
) -> dict[str, str]:
    """The variables ``up``/``migrate`` set: the data folder always, the rest only if unset."""
    updates = {"WADDLEBOT_DATA_DIR": str(data_dir)}
    if local_url:
        for name in ("WADDLEBOT_PUBLIC_URL", "ROUTER_API_URL"):
            if not environ.get(name):
                updates[name] = local_url
        if not environ.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS"):
            updates["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
    if api_key and not first_key(environ.get("WADDLEBOT_API_KEYS")):
        updates["WADDLEBOT_API_KEYS"] = api_key
    return updates


def service_key_for(environ: Mapping[str, str], data_dir: Path) -> tuple[str, str]:
    """(key, source): the first of ``WADDLEBOT_API_KEYS``, else the data folder's dev key."""
    configured = first_key(environ.get("WADDLEBOT_API_KEYS"))
    if configured:
        return configured, "env"
    key, created = read_or_create_api_key(data_dir)
    return key, "generated" if created else "data_dir"


def resolve_chat_key(cli_key: str | None, environ: Mapping[str, str], data_dir: Path) -> str | None:
    """``--api-key``, ``WADDLEBOT_API_KEY``, first of ``WADDLEBOT_API_KEYS``, the data dir."""
    for candidate in (
        cli_key,
        environ.get("WADDLEBOT_API_KEY"),
        first_key(environ.get("WADDLEBOT_API_KEYS")),
    ):
        if candidate and candidate.strip():
            return candidate.strip()
    return read_api_key(data_dir)


def prepare_environment(data_dir: Path, local_url: str | None = None) -> tuple[str, str]:
    """Apply :func:`env_defaults` to this process; return (service key, key source)."""
    key, source = service_key_for(os.environ, data_dir)
    os.environ.update(env_defaults(os.environ, data_dir=data_dir, local_url=local_url, api_key=key))
    return key, source


# -- error messages ----------------------------------------------------------------------


def _known_errors() -> tuple[type[BaseException], ...]:
    from .db import DatabaseUnavailable
    from .serve import AppLoadError
    from .settings import SettingsError

    return (CliError, SettingsError, DatabaseUnavailable, AppLoadError)


def _fail(message: str) -> int:
    lines = str(message).strip().splitlines() or ["unknown error"]
    for line in lines:
        print(f"error: {line}", file=sys.stderr, flush=True)
    return 1


def error_message(body, fallback: str) -> str:
    """The ``error.message`` of a DESIGN §8 error body, or the fallback."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            field = error.get("field")
            message = str(error["message"])
            return f"{message} ({field})" if field and field not in message else message
        if isinstance(error, str) and error:
            return error
    return fallback


# -- waddlebot migrate ---------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or update every table and index, then list the tables."""
    data_dir = data_dir_path(args.data_dir, os.environ)
    try:
        prepare_environment(data_dir)
        from .migrate import migrate_all

        tables = migrate_all()
    except _known_errors() as exc:
        return _fail(str(exc))
    print(f"migrated {len(tables)} tables:")
    for table in tables:
        print(f"  {table}")
    return 0


# -- waddlebot up --------------------------------------------------------------------------


def _seed_demo(database) -> dict | None:
    try:
        from . import seed
    except ImportError as exc:
        if exc.name in ("waddlebot.seed", __package__ + ".seed"):
            return None
        raise
    return seed.seed_demo(database)


def _overlay_url(url: str, key: str) -> str | None:
    from .http import session

    try:
        answer = session().get(
            f"{url}/api/portal/overlays",
            params={"entity_id": DEMO_ENTITY},
            headers={"X-API-Key": key},
            timeout=5,
        )
        if answer.ok:
            return answer.json().get("url")
    except Exception:  # noqa: BLE001 - the banner works without an overlay URL
        return None
    return None


def _banner(
    *,
    url: str,
    apps: list[str],
    key: str,
    key_source: str,
    data_dir: Path,
    chat_hint: str,
    overlay: str | None,
) -> str:
    from .serve import API_PREFIXES

    width = max(len(name) for name in apps)
    lines = [f"WaddleBot is up at {url}  ({len(apps)} apps, data in {data_dir})", ""]
    lines += [f"  {name:<{width}}  {url}{API_PREFIXES[name]}/health" for name in apps]
    lines.append("")
    if key_source == "env":
        lines.append("API key (X-API-Key): the first key of WADDLEBOT_API_KEYS")
    else:
        lines.append(f"API key (X-API-Key): {key}")
        lines.append(f"  (kept in {data_dir / API_KEY_FILE}; shown only here)")
    lines.append(f"Demo console channel: {DEMO_ENTITY}")
    if overlay:
        lines.append(f"Demo overlay (OBS browser source): {overlay}")
    lines.append(f"Chat with the bot: {chat_hint}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    """Run the fleet in one process until Ctrl-C or SIGTERM."""
    from . import serve

    data_dir = data_dir_path(args.data_dir, os.environ)
    url = base_url(args.host, args.port)
    names = [n.strip() for n in (args.apps or "").split(",") if n.strip()] or list(serve.APPS)
    unknown = [n for n in names if n not in serve.APPS]
    if unknown:
        return _fail(f"unknown app {unknown[0]!r}; apps are: {', '.join(serve.APPS)}")
    try:
        server = serve.create_server(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return _fail(f"cannot listen on {args.host}:{args.port}: {reason}")
    try:
        key, key_source = prepare_environment(data_dir, url)
        from .migrate import migrated_database

        database = migrated_database()
        try:
            _seed_demo(database)
        finally:
            database.close()
        application = serve.load_apps(names)
    except _known_errors() as exc:
        server.server_close()
        return _fail(str(exc))
    except BaseException:
        server.server_close()
        raise

    chat_hint = f"waddlebot chat --url {url}"
    if data_dir != data_dir_path(None, {}):
        chat_hint += f" --data-dir {data_dir}"

    def announce():
        overlay = _overlay_url(url, key) if "portal_module" in names else None
        print(
            _banner(
                url=url,
                apps=names,
                key=key,
                key_source=key_source,
                data_dir=data_dir,
                chat_hint=chat_hint,
                overlay=overlay,
            ),
            flush=True,
        )

    serve.run_server(application, args.host, args.port, server=server, on_ready=announce)
    print("WaddleBot stopped.", flush=True)
    return 0


# -- waddlebot chat ------------------------------------------------------------------------


def format_reply(payload: Mapping) -> list[str]:
    """The console lines for one reply the router pushed to the console collector."""
    lines = []
    action = payload.get("response_action") or "chat"
    if action == "chat":
        if payload.get("chat_message"):
            lines.append(f"bot> {payload['chat_message']}")
        elif payload.get("error_message"):
            lines.append(f"bot> error: {payload['error_message']}")
    elif action == "media":
        lines.append(
            f"[media {payload.get('media_type') or 'media'}] "
            f"{payload.get('media_url') or ''}".rstrip()
        )
        if payload.get("chat_message"):
            lines.append(f"bot> {payload['chat_message']}")
    elif action == "ticker":
        lines.append(
            f"[ticker {payload.get('ticker_duration') or 10}s] "
            f"{payload.get('ticker_text') or ''}".rstrip()
        )
    elif action == "form":
        lines.append(f"[form] {payload.get('form_title') or ''}".rstrip())
    else:
        lines.append(f"[{action}] {json.dumps(payload, default=str)[:200]}")
    moderation = payload.get("moderation")
    if isinstance(moderation, Mapping):
        what = moderation.get("action") or "moderate"
        target = moderation.get("message_id")
        if what == "delete":
            lines.append(f"[moderation] delete message {target}")
        else:
            lines.append(f"[moderation] {what}" + (f" (message {target})" if target else ""))
    return lines


def event_payload(line: str, *, channel: str, user: str, roles: list[str]) -> dict:
    """The ``/api/router/events`` body for one typed line (DESIGN §5)."""
    payload = {
        "platform": "console",
        "server_id": channel,
        "channel_id": channel,
        "user_id": user,
        "user_name": user,
        "message_type": "chatMessage",
        "message_content": line,
        "event_id": uuid.uuid4().hex,
        "user_roles": list(roles),
    }
    if "broadcaster" in roles:
        payload["owner_user_id"] = user
    return payload


def expects_reply(answer) -> bool:
    """Whether the router's answer to one event means a reply may still be pushed."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("executions"), list):
        return True
    matched = answer.get("matched") if isinstance(answer.get("matched"), Mapping) else {}
    return bool(answer["executions"] or matched.get("string_rule") or matched.get("event_triggers"))


def event_notes(answer) -> list[str]:
    """Console notes about the router's answer to one line (an unknown command)."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("matched"), Mapping):
        return []
    unknown = answer["matched"].get("unknown_command")
    return [f"[no command {unknown} here; try !help]"] if unknown else []


def registration_payload(port: int) -> dict:
    """The ``/api/modules/register`` body of the console collector."""
    endpoint = f"http://127.0.0.1:{port}"
    return {
        "module_name": "console",
        "module_version": "1.0.0",
        "module_type": "collector",
        "platform": "console",
        "endpoint_url": endpoint,
        "health_check_url": f"{endpoint}/api/console/health",
        "core": False,
        "commands": [],
    }


class ConsoleListener:
    """The local endpoint the router pushes replies to; prints each one."""

    def __init__(self, api_key: str, out=None, prompt: str = ""):
        self.api_key = api_key
        self.out = out or sys.stdout
        self.prompt = prompt
        self.replies = 0
        self.last_reply_at: float | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="console-listener", daemon=True
        )

    def start(self) -> None:
        """Start accepting pushes in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the listener and release its port."""
        self.server.shutdown()
        self.server.server_close()

    def key_ok(self, presented: str | None) -> bool:
        """Constant-time comparison with the service key."""
        return bool(presented) and hmac.compare_digest(presented.encode(), self.api_key.encode())

    def deliver(self, payload: Mapping) -> None:
        """Print one pushed reply and note when it arrived."""
        lines = format_reply(payload)
        with self._lock:
            self.replies += 1
            self.last_reply_at = time.monotonic()
            if lines:
                text = "\n".join(lines)
                if self.prompt:
                    text = f"\r{text}\n{self.prompt}"
                    self.out.write(text)
                else:
                    self.out.write(text + "\n")
                self.out.flush()

    def note(self, lines: list[str]) -> None:
        """Print local lines (errors, hints) without interleaving with pushed replies."""
        if not lines:
            return
        with self._lock:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def _handler_class(self):
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "WaddleBotConsole/1.0"

            def log_message(self, format, *args):  # noqa: A002 - stdlib signature
                """No access log on the console."""

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._answer(status, {"error": {"code": code, "message": message}})

            def do_GET(self):  # noqa: N802 - stdlib name
                if self.path.split("?", 1)[0] == "/api/console/health":
                    self._answer(200, {"status": "ok"})
                else:
                    self._error(404, "not_found", "no such path")

            def do_POST(self):  # noqa: N802 - stdlib name
                if self.path.split("?", 1)[0] != "/api/console/responses":
                    self._error(404, "not_found", "no such path")
                    return
                presented = self.headers.get("X-API-Key")
                if not presented:
                    self._error(401, "unauthorized", "missing X-API-Key header")
                    return
                if not listener.key_ok(presented):
                    self._error(403, "forbidden", "invalid X-API-Key")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    payload = json.loads(self.rfile.read(min(length, 1_048_576)) or b"null")
                except (ValueError, UnicodeDecodeError):
                    self._error(400, "validation_error", "body is not valid JSON")
                    return
                if not isinstance(payload, dict):
                    self._error(400, "validation_error", "body must be a JSON object")
                    return
                listener.deliver(payload)
                self._answer(200, {"status": "ok"})

        return Handler


def _post(url: str, key: str, body: dict, timeout: float):
    import requests

    from .http import session

    try:
        return session().post(url, json=body, headers={"X-API-Key": key}, timeout=timeout)
    except requests.Timeout:
        raise CliError(f"{url} did not answer within {timeout:g}s") from None
    except requests.RequestException:
        base = url.split("/api/", 1)[0]
        raise CliError(f"cannot reach the router at {base} (is `waddlebot up` running?)") from None


def _json_or_none(answer):
    try:
        return answer.json()
    except ValueError:
        return None


def cmd_chat(args: argparse.Namespace) -> int:
    """Chat with the bot from the terminal, as the console collector."""
    url = args.url.rstrip("/")
    data_dir = data_dir_path(args.data_dir, os.environ)
    key = resolve_chat_key(args.api_key, os.environ, data_dir)
    if not key:
        return _fail(
            "no API key: pass --api-key, set WADDLEBOT_API_KEY, or run "
            f"`waddlebot up` with --data-dir {data_dir} first"
        )
    roles = [r.strip().lower() for r in (args.roles or "").split(",") if r.strip()]
    interactive = sys.stdin.isatty()
    prompt = "you> " if interactive else ""
    listener = ConsoleListener(key, prompt=prompt)
    listener.start()
    try:
        return _chat_loop(args, url, key, roles, listener, prompt)
    except CliError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("", flush=True)
        return 0
    finally:
        listener.stop()


def _chat_loop(
    args, url: str, key: str, roles: list[str], listener: ConsoleListener, prompt: str
) -> int:
    answer = _post(
        f"{url}/api/modules/register",
        key,
        registration_payload(listener.port),
        timeout=args.timeout,
    )
    if not answer.ok:
        message = error_message(_json_or_none(answer), f"HTTP {answer.status_code}")
        raise CliError(f"the router refused the console collector: {message}")
    if prompt:
        print(
            f"Chatting in console:{args.channel}:{args.channel} as {args.user}"
            f" ({', '.join(roles) or 'no roles'}). Ctrl-D to quit.",
            flush=True,
        )
    expecting = 0
    last_expected_at = 0.0
    while True:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        body = event_payload(line, channel=args.channel, user=args.user, roles=roles)
        sent_at = time.monotonic()
        answer = _post(f"{url}/api/router/events", key, body, timeout=args.timeout)
        result = _json_or_none(answer)
        if not answer.ok:
            listener.note([f"error: {error_message(result, f'HTTP {answer.status_code}')}"])
            continue
        listener.note(event_notes(result))
        if expects_reply(result):
            expecting += 1
            last_expected_at = sent_at
    if prompt:
        print("", flush=True)
    _drain(listener, expecting=expecting, last_expected_at=last_expected_at, wait=args.wait)
    return 0


def _drain(
    listener: ConsoleListener, *, expecting: int, last_expected_at: float, wait: float
) -> None:
    """After end of input, wait (at most ``wait`` s) for the replies still on their way."""
    if not expecting:
        return
    eof_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now - eof_at >= wait:
            return
        last = listener.last_reply_at
        if last is not None and last >= last_expected_at and now - last >= REPLY_QUIET_SECONDS:
            return
        time.sleep(0.05)


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``waddlebot`` command."""
    parser = argparse.ArgumentParser(prog="waddlebot", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run every app in one local process")
    up.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    up.add_argument("--data-dir", default=None, help="data folder (WADDLEBOT_DATA_DIR or ./.data)")
    up.add_argument("--apps", default=None, help="comma-separated apps to run (default: all)")
    up.set_defaults(func=cmd_up)

    migrate = commands.add_parser("migrate", help="create or update every table")
    migrate.add_argument(
        "--data-dir", default=None, help="data folder (WADDLEBOT_DATA_DIR or ./.data)"
    )
    migrate.set_defaults(func=cmd_migrate)

    chat = commands.add_parser("chat", help="chat with the bot as the console collector")
    chat.add_argument("--url", default=DEFAULT_URL, help="router base URL (%(default)s)")
    chat.add_argument("--channel", default="demo", help="console channel (%(default)s)")
    chat.add_argument("--user", default="alice", help="your user name (%(default)s)")
    chat.add_argument(
        "--roles", default="broadcaster", help="comma-separated platform roles (%(default)s)"
    )
    chat.add_argument(
        "--api-key",
        default=None,
        help="service key (else WADDLEBOT_API_KEY, WADDLEBOT_API_KEYS, data dir)",
    )
    chat.add_argument(
        "--wait",
        type=float,
        default=5.0,
        help="seconds to wait for replies after the input ends (%(default)s)",
    )
    chat.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the router to answer a call (%(default)s)",
    )
    chat.add_argument(
        "--data-dir",
        default=None,
        help="data folder holding api_key (WADDLEBOT_DATA_DIR or ./.data)",
    )
    chat.set_defaults(func=cmd_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``waddlebot`` command; the exit code is 0 on success, 1 on a failure."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
