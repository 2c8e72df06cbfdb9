"""Load the py4web apps of the fleet and serve them.

``load_apps`` imports apps through py4web (``py4web.core.wsgi``) and turns the import
failures py4web swallows into one :class:`AppLoadError` with a short message per app
(``router_module: SettingsError: WADDLEBOT_API_KEYS: ...``), never a traceback dump.
``wsgi_app`` is the production entry used by each app's ``wsgi.py`` under gunicorn;
``run_server`` is the threaded stdlib server behind ``waddlebot up``.
"""

from __future__ import annotations

import contextlib
import gc
import io
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import is_hop_by_hop

from .green import cooperate
from .observability import redact
from .settings import Env

#: every app of the fleet, in start order (the router first: the others register with it)
APPS = (
    "router_module",
    "marketplace_module",
    "portal_module",
    "labels_core_module",
    "kong_admin_broker",
    "twitch_module",
    "discord_module",
    "slack_module",
    "ai_interaction_module",
    "alias_interaction_module",
    "shoutout_interaction_module",
)

#: the public path prefix of each app (DESIGN §3); health is ``<prefix>/health``
API_PREFIXES = {
    "router_module": "/api/router",
    "marketplace_module": "/api/marketplace",
    "portal_module": "/api/portal",
    "labels_core_module": "/api/labels",
    "kong_admin_broker": "/api/broker/v1",
    "twitch_module": "/api/twitch",
    "discord_module": "/api/discord",
    "slack_module": "/api/slack",
    "ai_interaction_module": "/api/ai/v1",
    "alias_interaction_module": "/api/alias",
    "shoutout_interaction_module": "/api/shoutout",
}

#: concurrent connections the listen socket queues before the server accepts them
LISTEN_BACKLOG = 256


class AppLoadError(RuntimeError):
    """One or more apps failed to import; the message has one short line per app."""

    def __init__(self, failures: dict[str, str]):
        self.failures = dict(failures)
        super().__init__("\n".join(f"{app}: {why}" for app, why in self.failures.items()))


def _is_apps_folder(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name / "__init__.py").is_file() for name in APPS)


def apps_folder() -> Path:
    """The folder that holds the apps: ``WADDLEBOT_APPS_FOLDER``, else the repository root."""
    configured = Env().str("WADDLEBOT_APPS_FOLDER", None)
    if configured:
        folder = Path(configured).resolve()
        if not _is_apps_folder(folder):
            raise AppLoadError(
                {"WADDLEBOT_APPS_FOLDER": f"{folder} does not hold any WaddleBot app"}
            )
        return folder
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd().resolve()):
        if _is_apps_folder(candidate):
            return candidate
    raise AppLoadError(
        {
            "WADDLEBOT_APPS_FOLDER": "cannot find the apps folder; set it to the folder that "
            "holds router_module"
        }
    )


def summarize_traceback(text: str) -> str:
    """The exception line of a formatted traceback, without the module path of its type."""
    lines = [line for line in (text or "").rstrip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    tail: list[str] = []
    for line in reversed(lines):
        if line.startswith((" ", "\t")):
            break
        tail.append(line)
    message = tail[-1] if tail else lines[-1]
    kind, sep, rest = message.partition(": ")
    if sep and " " not in kind:
        message = f"{kind.rsplit('.', 1)[-1]}: {rest}"
    elif not sep and " " not in message:
        message = message.rsplit(".", 1)[-1]
    return redact(message.strip())


def _service_folder() -> Path:
    data_dir = Path(Env().str("WADDLEBOT_DATA_DIR", ".data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / ".service"


def load_apps(app_names: Iterable[str]):
    """Import the apps through py4web and return its WSGI app; AppLoadError if any fails."""
    names = list(dict.fromkeys(app_names))
    if not names:
        raise AppLoadError({"apps": "no app to load"})
    folder = apps_folder()
    missing = {
        n: f"no such app in {folder}" for n in names if not (folder / n / "__init__.py").is_file()
    }
    if missing:
        raise AppLoadError(missing)

    from py4web import core  # imported late: py4web reads its environment at import

    # py4web joins its service folder (session secret, error tickets) to the apps folder;
    # an absolute path wins the join, which keeps it out of a read-only app tree.
    core.DEFAULTS["PY4WEB_SERVICE_FOLDER"] = str(_service_folder())
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        application = core.wsgi(apps_folder=str(folder), app_names=",".join(names), yes=True)
    failures = {}
    for name in names:
        error = core.Reloader.ERRORS.get(name)
        if error:
            failures[name] = summarize_traceback(error)
        elif name not in core.Reloader.MODULES:
            failures[name] = "was not loaded"
    if failures:
        raise AppLoadError(failures)
    return application


#: gunicorn's "App failed to load" worker exit code: the master stops instead of respawning
GUNICORN_APP_LOAD_ERROR = 4


def wsgi_app(app_name: str):
    """The WSGI app of one app for gunicorn; exit non-zero with a one-line reason if it fails.

    Under gunicorn's gevent worker (sockets already patched) psycopg2 is made to wait
    through gevent first (:func:`waddlebot.green.cooperate`); once loaded, the garbage
    collector is tamed for serving (:func:`tame_gc`) and every answer releases its
    request's objects when the server is done with it (:class:`ReleasingAnswer`).
    """
    cooperate()
    try:
        application = load_apps([app_name])
    except AppLoadError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        # A gunicorn worker that exits 1 is respawned forever; 4 makes the master halt.
        in_gunicorn = "gunicorn.arbiter" in sys.modules
        raise SystemExit(GUNICORN_APP_LOAD_ERROR if in_gunicorn else 1) from None
    tame_gc()
    return releasing(application)


def releasing(application: Callable) -> Callable:
    """``application`` with each answer wrapped in a :class:`ReleasingAnswer`."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = application(environ, start_response)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(body, file_wrapper):
            return body  # the server sends files itself (sendfile): leave it alone
        return ReleasingAnswer(body, environ)

    return wrapped


class ReleasingAnswer:
    """A response body that empties the request's environ once the server closes it.

    The environ is the hub of reference cycles (ombott's header view holds it, and
    gunicorn's early-hints callback holds the response that holds the request), so a
    request's objects could only be freed by the cyclic garbage collector. Under load
    they outlived young collections, since requests were still in flight, and piled up
    in the old generation (about 25,000 objects a minute per router worker). When the
    server closes the answer, after writing it, every value of the environ that is not
    a string is removed (strings cannot form cycles, and access logs or a
    ``post_request`` hook still find the request line, path and headers), so those
    objects are freed by reference counting at once.
    """

    __slots__ = ("_body", "_environ")

    def __init__(self, body: Iterable[bytes], environ: dict):
        self._body = body
        self._environ = environ

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        """Close the app's body (WSGI), then release the environ's objects."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            environ = self._environ
            for key in [k for k, v in environ.items() if not isinstance(v, str)]:
                del environ[key]


#: mean seconds between two full garbage collections of a serving worker (see tame_gc)
FULL_COLLECTION_INTERVAL = 300.0


def tame_gc(interval: float = FULL_COLLECTION_INTERVAL) -> threading.Thread:
    """Keep full garbage collections off the request path's tail latency.

    The code and the objects built at import live as long as the process; they are
    moved out of the cyclic collector's sight (:func:`gc.freeze`). Python would still
    run a full collection whenever the objects surviving young collections reach a
    quarter of the old ones, which under steady load (every in-flight request's objects
    survive a young collection) meant one every few seconds, walking every cached row:
    pauses of 15-55 ms per worker that landed on the requests in flight (the router's
    p99). Full collections therefore run on a timer from a daemon thread, every
    ``interval`` seconds on average, each wait drawn between half and one and a half
    times it so the workers of a pod, started together, do not pause together. Young
    collections are unchanged, so short-lived cycles are freed as before; cyclic
    garbage that reached the old generation (little, since :class:`ReleasingAnswer`)
    waits at most 1.5 × ``interval``. Returns the thread.
    """
    gc.collect()
    gc.freeze()
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)  # never reached: the timer collects

    def collect_every() -> None:
        jitter = random.Random()
        while True:
            time.sleep(interval * jitter.uniform(0.5, 1.5))
            gc.collect()

    thread = threading.Thread(target=collect_every, name="full-gc", daemon=True)
    thread.start()
    return thread


class _ThreadedServerHandler(ServerHandler):
    """wsgiref's handler, told it runs threaded, dropping hop-by-hop headers apps set."""

    def start_response(self, status, headers, exc_info=None):
        """Start the response without headers that only the server may set."""
        kept = [(name, value) for name, value in headers if not is_hop_by_hop(name)]
        return super().start_response(status, kept, exc_info)


class QuietRequestHandler(WSGIRequestHandler):
    """A request handler that does not log every request on stderr."""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        """Drop the per-request access line."""

    def handle(self):
        """Handle one request (as the stdlib does, with the threaded handler above)."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ThreadedServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self
        handler.run(self.server.get_app())


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """The stdlib WSGI server with one daemon thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG


class ThreadingWSGIServerV6(ThreadingWSGIServer):
    """The same server on an IPv6 address."""

    address_family = socket.AF_INET6


def _not_ready(environ, start_response):
    start_response(
        "503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "2")]
    )
    return [b'{"error": {"code": "service_unavailable", "message": "starting"}}']


def create_server(host: str, port: int, app=None) -> ThreadingWSGIServer:
    """Bind the threaded server now (OSError if the port is taken); set the app later."""
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    return make_server(
        host.strip("[]"),
        port,
        app or _not_ready,
        server_class=server_class,
        handler_class=QuietRequestHandler,
    )


def run_server(
    app,
    host: str,
    port: int,
    *,
    server: ThreadingWSGIServer | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop cleanly and return."""
    server = server or create_server(host, port, app)
    server.set_app(app)
    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever, which runs on this (main) thread
            threading.Thread(target=server.shutdown, name="server-shutdown", daemon=True).start()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
    try:
        if on_ready is not None:
            threading.Thread(target=on_ready, name="server-ready", daemon=True).start()
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
