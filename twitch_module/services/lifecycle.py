"""The collector's life with the router: register, heartbeat, claim channels, check in.

:class:`CollectorLifecycle` is a plain object whose :meth:`~CollectorLifecycle.run_once`
does whatever is due - register (retried until the router answers), claim up to
``MAX_CLAIMS`` channels and create their EventSub subscriptions, heartbeat every
``HEARTBEAT_INTERVAL``, and at every check-in renew the claims, report live status
from Helix, release offline channels and take new ones. A thread calls it on a short
tick; tests call it directly. :meth:`~CollectorLifecycle.shutdown` releases every claim
(registered with ``atexit``). A router without the coordination API (404) is noted and
the rest keeps working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from waddlebot.http import HttpError
from waddlebot.twitch.helix import HelixClient

from .router import RouterClient, RouterError, RouterRejected
from .subscriptions import SubscriptionManager

log = logging.getLogger("waddlebot.twitch.lifecycle")

PLATFORM = "twitch"


class CollectorLifecycle:
    """Registration, heartbeats, channel claims and subscriptions, one step at a time."""

    def __init__(
        self,
        *,
        router: RouterClient,
        registration: dict,
        container_id: str,
        max_claims: int = 5,
        heartbeat_interval: float = 300.0,
        checkin_interval: float = 300.0,
        subscriptions: SubscriptionManager | None = None,
        helix: HelixClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.router = router
        self.registration = registration
        self.module_name = registration["module_name"]
        self.container_id = container_id
        self.max_claims = max_claims
        self.heartbeat_interval = heartbeat_interval
        self.checkin_interval = checkin_interval
        self.subscriptions = subscriptions
        self.helix = helix
        self._clock = clock
        self.registered = False
        self.claims: dict[str, dict] = {}
        self.coordination_available: bool | None = None
        self.last_error: str | None = None
        self._claimed_once = False
        self._claim_requested = False
        self._next_heartbeat = 0.0
        self._next_checkin = 0.0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False

    # -- one step -----------------------------------------------------------------------
    def run_once(self, now: float | None = None) -> list[str]:
        """Do every step that is due now; returns the names of the steps done."""
        with self._lock:
            now = self._clock() if now is None else now
            done: list[str] = []
            if not self.registered:
                try:
                    self.router.register(self.registration)
                except RouterError as exc:
                    self._error(f"registration failed: {exc}")
                    return done
                self.registered = True
                self._next_heartbeat = now + self.heartbeat_interval
                log.info("registered collector %s with the router", self.module_name)
                done.append("register")
            if not self._claimed_once or self._claim_requested:
                self._claim_requested = False
                self._claim()
                if not self._claimed_once:
                    self._next_checkin = now + self.checkin_interval
                self._claimed_once = True
                done.append("claim")
            if now >= self._next_heartbeat:
                self._heartbeat()
                self._next_heartbeat = now + self.heartbeat_interval
                done.append("heartbeat")
            if now >= self._next_checkin:
                self._checkin()
                self._next_checkin = now + self.checkin_interval
                done.append("checkin")
            return done

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def _coordinate(self, action: str, body: dict) -> dict | None:
        """One coordination call; None when the router lacks the API or is unreachable."""
        try:
            answer = self.router.coordination(action, body)
        except RouterRejected as exc:
            if _route_missing(exc):
                if self.coordination_available is not False:
                    log.warning("router has no coordination API (%s answered 404)", action)
                self.coordination_available = False
            else:
                self.coordination_available = True
                self._error(f"coordination {action} refused: {exc}")
            return None
        except RouterError as exc:
            self._error(f"coordination {action} failed: {exc}")
            return None
        self.coordination_available = True
        return answer if isinstance(answer, dict) else {}

    # -- claims -------------------------------------------------------------------------
    def claim_soon(self) -> None:
        """A channel was just activated: try to claim on the next tick, not at check-in."""
        self._claim_requested = True

    def _claim(self) -> None:
        if self.max_claims <= 0:
            return
        answer = self._coordinate(
            "claim",
            {
                "platform": PLATFORM,
                "container_id": self.container_id,
                "max_claims": self.max_claims,
            },
        )
        if answer is not None:
            self._adopt(answer.get("claimed") or [])

    def _adopt(self, claims: list) -> None:
        """Take over claimed channels and create the subscriptions new ones need."""
        for claim in claims:
            if not isinstance(claim, dict) or not claim.get("entity_id"):
                continue
            entity_id = claim["entity_id"]
            fresh = entity_id not in self.claims
            self.claims[entity_id] = claim
            if fresh:
                log.info("claimed %s", entity_id)
                self._subscribe(claim)

    def _subscribe(self, claim: dict) -> None:
        if self.subscriptions is None:
            return
        channel = str(claim.get("channel_id") or claim.get("server_id") or "")
        if not channel:
            return
        try:
            result = self.subscriptions.ensure(channel)
        except Exception as exc:  # noqa: BLE001 - one channel must not stop the others
            result = {"errors": [f"{type(exc).__name__}: {exc}"]}
        if result.get("errors"):
            self._coordinate(
                "error",
                {
                    "entity_id": claim["entity_id"],
                    "container_id": self.container_id,
                    "error": "; ".join(result["errors"])[:1000],
                },
            )

    def _forget(self, released: list) -> None:
        for item in released:
            entity_id = item.get("entity_id") if isinstance(item, dict) else item
            if isinstance(entity_id, str) and self.claims.pop(entity_id, None) is not None:
                log.info("released %s", entity_id)

    # -- periodic steps -----------------------------------------------------------------
    def _heartbeat(self) -> None:
        try:
            self.router.heartbeat(self.module_name)
        except RouterRejected as exc:
            if exc.status == 404:
                # the router forgot us (fresh database): register again on the next tick
                self.registered = False
            self._error(f"heartbeat refused: {exc}")
        except RouterError as exc:
            self._error(f"heartbeat failed: {exc}")
        self._coordinate("heartbeat", {"container_id": self.container_id})

    def _checkin(self) -> None:
        answer = self._coordinate("checkin", {"container_id": self.container_id})
        if answer is not None and isinstance(answer.get("claims"), list):
            current = {c["entity_id"] for c in answer["claims"] if isinstance(c, dict)}
            self._forget([e for e in list(self.claims) if e not in current])
            self._adopt(answer["claims"])
        self._report_live_status()
        answer = self._coordinate(
            "release-offline",
            {
                "container_id": self.container_id,
                "platform": PLATFORM,
                "max_claims": self.max_claims,
            },
        )
        if answer is not None:
            self._forget(answer.get("released") or [])
            self._adopt(answer.get("claimed") or [])

    def _report_live_status(self) -> None:
        """Tell the coordination API which claimed channels are live, and their viewers."""
        if self.helix is None or not self.claims or self.coordination_available is False:
            return
        channels = {
            str(c.get("channel_id") or c.get("server_id")): entity_id
            for entity_id, c in self.claims.items()
        }
        try:
            streams = self.helix.get_streams(user_ids=list(channels)[:100])
        except HttpError as exc:
            self._error(f"live status from Helix failed: {exc}")
            return
        live = {s.get("user_id"): s for s in streams if s.get("type") == "live"}
        for channel, entity_id in channels.items():
            stream = live.get(channel)
            body = {"entity_id": entity_id, "is_live": stream is not None}
            if stream is not None:
                body["viewer_count"] = int(stream.get("viewer_count") or 0)
            self._coordinate("status", body)

    # -- thread and shutdown ------------------------------------------------------------
    def tick(self) -> float:
        """Seconds between two run_once calls of the thread."""
        return max(0.05, min(self.heartbeat_interval, self.checkin_interval, 5.0) / 2)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the lifecycle must keep going
                log.exception("lifecycle step failed")
            self._stopping.wait(self.tick())

    def start(self) -> None:
        """Start the daemon lifecycle thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="twitch-lifecycle", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop the thread and release every claim (atexit)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self._released or not self._claimed_once or self.coordination_available is False:
                return
            self._released = True
            try:
                answer = self.router.coordination("release", {"container_id": self.container_id})
            except RouterError as exc:
                # e.g. the router shut down first: the claims expire without check-ins
                log.info("claims not released at shutdown (%s); they will expire", exc)
            else:
                log.info("released %s claims on shutdown", answer.get("released", 0))
            self.claims.clear()

    def status(self) -> dict:
        """What the lifecycle knows, for the status endpoint (no lock: never waits)."""
        return {
            "enabled": True,
            "registered": self.registered,
            "container_id": self.container_id,
            "claims": sorted(list(self.claims)),
            "coordination": {None: "unknown", True: "available", False: "unavailable"}[
                self.coordination_available
            ],
            "last_error": self.last_error,
        }


def _route_missing(exc: RouterRejected) -> bool:
    """A 404 for the path itself (an older router), not a JSON "entity not found"."""
    if exc.status != 404:
        return False
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    return not (isinstance(error, dict) and error.get("code") == "not_found")


def collector_registration(*, module_name: str, module_version: str, public_url: str) -> dict:
    """The ``/api/modules/register`` body of the Twitch collector (DESIGN §5)."""
    return {
        "module_name": module_name,
        "module_version": module_version,
        "module_type": "collector",
        "platform": PLATFORM,
        "endpoint_url": public_url,
        "health_check_url": f"{public_url}/api/twitch/health",
        "core": False,
        "commands": [],
    }
