"""Stored notifications → the router, until accepted ("nothing lost").

The webhook only stores; this background pipeline forwards. A coordinator thread
takes the fresh rows the writer handed over in memory (already leased to this
process), or else the due rows of ``twitch_events`` (``forwarded = false``,
``next_attempt_at <= now``, oldest first: retries, and rows a stopped process never
sent), leased with one conditional update carrying a random lease token so several
replicas never send the same row at once. Each batch goes to a worker; up to
``workers`` batches are in flight, so one slow command cannot hold up the others. A
worker sends its events in one ``/api/router/events/batch`` call (a single event goes
to ``/api/router/events``) and records every outcome in one transaction. A router that
is down, slow or failing gets the rows again later with exponential back-off (up to
``max_backoff``); since the router de-duplicates on ``event_id``, a resend after a
crash or a lost answer is harmless. An event the router refuses as invalid is marked
``rejected``. Database connections are taken for the lease and for the record, never
held while forwarding or waiting.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from waddlebot.db import Database, utcnow

from ._bulk import MissingUniqueIndex, insert_many
from .events import Translation, TranslationError, translate
from .router import RouterClient, RouterRejected, RouterUnavailable

log = logging.getLogger("waddlebot.twitch.forwarder")


@dataclasses.dataclass(slots=True)
class Outcome:
    """What became of one leased row in this pass (written at the end of the pass)."""

    row: object
    status: str
    error: str | None = None
    translation: Translation | None = None
    answer: dict | None = None
    attempted: bool = True


class EventForwarder:
    """Forwards stored EventSub notifications to the router and records the outcome."""

    def __init__(
        self,
        *,
        database: Database,
        router: RouterClient,
        bot_user_id: str | None = None,
        on_bot_roles: Callable[[str, tuple[str, ...]], None] | None = None,
        batch_size: int = 100,
        workers: int = 4,
        poll_interval: float = 1.0,
        base_backoff: float = 0.5,
        max_backoff: float = 10.0,
        lease_seconds: float = 60.0,
        min_interval: float = 0.1,
        max_hot: int = 10_000,
    ):
        self.database = database
        self.router = router
        self.bot_user_id = bot_user_id
        self.on_bot_roles = on_bot_roles
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.lease_seconds = lease_seconds
        self.min_interval = min_interval
        self.max_hot = max_hot
        self._hot: collections.deque = collections.deque()
        self._hot_lock = threading.Lock()
        self._last_lease = 0.0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="twitch-forward")
        self._slots = threading.Semaphore(workers)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._router_down = False
        self._multirow = True
        self._counts_lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    # -- control ------------------------------------------------------------------------
    def submit(self, rows: list) -> None:
        """Fresh rows, committed and leased to this process: forward them from memory."""
        with self._hot_lock:
            room = max(0, self.max_hot - len(self._hot))
            if room < len(rows):
                # the rest stay leased in the table; the scan sends them when it runs out
                log.warning(
                    "forwarder backlog full; %d events wait for the table scan", len(rows) - room
                )
            self._hot.extend(rows[:room])
        self._wake.set()

    def _take_hot(self) -> list:
        with self._hot_lock:
            count = min(len(self._hot), self.batch_size)
            return [self._hot.popleft() for _ in range(count)]

    def start(self) -> None:
        """Start the daemon forwarder thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="twitch-forwarder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass (tests, shutdown)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if not self._slots.acquire(timeout=self.poll_interval):
                continue  # every worker busy: look again (and notice stop()) shortly
            # pace the leases: a lone event goes at once, a busy stream forms batches
            pause = self.min_interval - (time.monotonic() - self._last_lease)
            if pause > 0:
                self._stopping.wait(pause)
            self._last_lease = time.monotonic()
            try:
                rows = self._take_hot() or self._lease(utcnow())
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a db outage
                self._slots.release()
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                log.warning("forwarder lease failed: %s %s", type(exc).__name__, first)
                self._wake.wait(self.poll_interval)
                continue
            if not rows:
                self._slots.release()
                self._wake.wait(self.poll_interval)
                continue
            self._pool.submit(self._run_batch, rows)

    def _run_batch(self, rows: list) -> None:
        """One leased batch on a worker; frees its slot whatever happens."""
        try:
            self._record(self._forward_batch(rows))
        except Exception as exc:  # noqa: BLE001 - the lease expires and the rows come back
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("forwarding a batch failed: %s %s", type(exc).__name__, first)
        finally:
            self._slots.release()

    # -- one pass -----------------------------------------------------------------------
    def run_once(self) -> int:
        """Take, forward and record one batch synchronously; returns how many rows."""
        rows = self._take_hot() or self._lease(utcnow())
        if rows:
            self._record(self._forward_batch(rows))
        return len(rows)

    def _lease(self, now: datetime.datetime) -> list:
        """Take up to a batch of due rows for this pass (one update, one token)."""
        token = uuid.uuid4().hex
        until = now + datetime.timedelta(seconds=self.lease_seconds)
        with self.database.connection() as db:
            table = db.twitch_events
            due = (
                (table.forwarded == False)  # noqa: E712 - pydal query, not a comparison
                & (table.next_attempt_at != None)  # noqa: E711
                & (table.next_attempt_at <= now)
            )
            oldest_due = db(due)._select(table.id, orderby=table.id, limitby=(0, self.batch_size))
            if not db(table.id.belongs(oldest_due) & due).update(
                next_attempt_at=until, lease_token=token
            ):
                return []
            return db(table.lease_token == token).select(
                table.id,
                table.message_id,
                table.subscription_type,
                table.broadcaster_user_id,
                table.payload,
                table.forward_attempts,
                orderby=table.id,
            )

    def _forward_batch(self, rows: list) -> list[Outcome]:
        """Translate every row and send what must go to the router; one outcome per row."""
        outcomes: list[Outcome] = []
        events: list[tuple[object, Translation]] = []
        for row in rows:
            try:
                translation = translate(
                    row.subscription_type,
                    row.payload or {},
                    message_id=row.message_id,
                    bot_user_id=self.bot_user_id,
                )
            except TranslationError as exc:
                outcomes.append(Outcome(row, "rejected", error=str(exc)))
                continue
            if translation.bot_roles is not None and self.on_bot_roles is not None:
                self.on_bot_roles(translation.broadcaster_id, translation.bot_roles)
            if translation.kind == "ignore":
                outcomes.append(Outcome(row, "ignored", error=translation.reason, attempted=False))
            elif translation.kind == "status":
                outcomes.append(self._send_status(row, translation))
            else:
                events.append((row, translation))
        if len(events) == 1:
            outcomes.append(self._send_one(*events[0]))
        elif events:
            outcomes += self._send_batch(events)
        return outcomes

    def _send_status(self, row, translation: Translation) -> Outcome:
        try:
            answer = self.router.coordination("status", translation.status)
        except RouterRejected as exc:
            return self._refused(row, exc)
        except RouterUnavailable as exc:
            return self._unavailable(row, exc)
        return self._accepted(row, translation, answer)

    def _send_one(self, row, translation: Translation) -> Outcome:
        try:
            answer = self.router.send_event(translation.event)
        except RouterRejected as exc:
            return self._refused(row, exc)
        except RouterUnavailable as exc:
            return self._unavailable(row, exc)
        return self._accepted(row, translation, answer)

    def _send_batch(self, events: list) -> list[Outcome]:
        try:
            answer = self.router.send_events([t.event for _, t in events])
        except RouterRejected as exc:
            # the batch as a whole was refused: send one by one so only bad events fail
            log.warning("router refused a batch (%s); sending its events one by one", exc)
            return [self._send_one(row, translation) for row, translation in events]
        except RouterUnavailable as exc:
            return [self._unavailable(row, exc) for row, _ in events]
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(events):
            error = RouterUnavailable("batch answer does not match the events sent")
            return [self._unavailable(row, error) for row, _ in events]
        outcomes = []
        for (row, translation), result in zip(events, results, strict=True):
            error = result.get("error") if isinstance(result, dict) else None
            if error:
                message = error.get("message") if isinstance(error, dict) else str(error)
                log.warning("router refused EventSub message %s: %s", row.message_id, message)
                outcomes.append(Outcome(row, "rejected", error=f"router refused: {message}"))
            else:
                outcomes.append(self._accepted(row, translation, result))
        return outcomes

    def _accepted(self, row, translation: Translation, answer) -> Outcome:
        if self._router_down:
            log.info("router reachable again; forwarding the backlog")
        self._router_down = False
        return Outcome(row, "forwarded", translation=translation, answer=answer or {})

    def _refused(self, row, exc: RouterRejected) -> Outcome:
        log.warning("router refused EventSub message %s: %s", row.message_id, exc)
        return Outcome(row, "rejected", error=str(exc))

    def _unavailable(self, row, exc: Exception) -> Outcome:
        if not self._router_down:
            log.warning("router unavailable, EventSub messages will be retried: %s", exc)
        self._router_down = True
        return Outcome(row, "retry", error=str(exc))

    # -- bookkeeping ----------------------------------------------------------------------
    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (exponential, capped, 10 % jitter)."""
        delay = min(self.max_backoff, self.base_backoff * 2 ** max(0, attempts - 1))
        return delay * (1 + random.random() * 0.1)

    def _record(self, outcomes: list[Outcome]) -> None:
        """Write every outcome of a batch, and the activities, in one transaction."""
        try:
            self._write(outcomes)
        except MissingUniqueIndex:
            log.warning("twitch_activities has no unique event_id index; run `waddlebot migrate`")
            self._multirow = False
            self._write(outcomes)
        with self._counts_lock:
            for outcome in outcomes:
                name = "retried" if outcome.status == "retry" else outcome.status
                self.counts[name] += 1

    def _write(self, outcomes: list[Outcome]) -> None:
        now = utcnow()
        # rows that share an outcome are updated together: a few statements per batch
        finished: dict[tuple, list[int]] = collections.defaultdict(list)
        retried: dict[tuple, list[int]] = collections.defaultdict(list)
        for outcome in outcomes:
            attempts = (outcome.row.forward_attempts or 0) + (1 if outcome.attempted else 0)
            error = (outcome.error or "")[:1024] or None
            if outcome.status == "retry":
                retried[(attempts, error)].append(outcome.row.id)
            else:
                finished[(outcome.status, outcome.attempted, error)].append(outcome.row.id)
        with self.database.connection() as db:
            table = db.twitch_events
            for (status, attempted, error), ids in finished.items():
                db(table.id.belongs(ids)).update(
                    status=status,
                    forwarded=status == "forwarded",
                    forward_attempts=table.forward_attempts + (1 if attempted else 0),
                    next_attempt_at=None,
                    last_error=error,
                    processed_at=now,
                    lease_token=None,
                )
            for (attempts, error), ids in retried.items():
                due = _not_before(now + datetime.timedelta(seconds=self.backoff(attempts)))
                db(table.id.belongs(ids)).update(
                    forward_attempts=table.forward_attempts + 1,
                    next_attempt_at=due,
                    last_error=error,
                    lease_token=None,
                )
            _record_activities(
                db, [o for o in outcomes if o.status == "forwarded"], multirow=self._multirow
            )

    def backlog(self) -> dict:
        """Rows waiting for the router and rows refused, for the status endpoint."""
        with self.database.connection() as db:
            table = db.twitch_events
            pending = db(
                (table.forwarded == False) & (table.status == "pending")  # noqa: E712
            ).count()
            rejected = db(table.status == "rejected").count()
        with self._counts_lock:
            counts = dict(self.counts)
        return {"pending": pending, "rejected": rejected, "since_start": counts}


def _not_before(moment: datetime.datetime) -> datetime.datetime:
    """Round up to the second: SQLite keeps whole seconds, and a retry must not come early."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + datetime.timedelta(seconds=1)
    return moment


def _record_activities(db, forwarded: list[Outcome], *, multirow: bool) -> None:
    """Activity rows with the points the router awarded (once per event)."""
    rows = []
    for outcome in forwarded:
        translation, answer = outcome.translation, outcome.answer or {}
        if translation is None or translation.activity is None:
            continue
        activity = translation.activity
        result = answer.get("status")
        if result == "processed":
            points = (answer.get("reputation") or {}).get("points", 0)
        elif result == "inactive":
            points = 0
        else:
            # "duplicate": an earlier attempt was processed and awarded the usual points
            points = activity.points
        rows.append(
            dict(
                event_id=translation.event["event_id"],
                message_id=outcome.row.message_id,
                activity_type=activity.activity_type,
                broadcaster_user_id=translation.broadcaster_id,
                user_id=activity.user_id,
                user_name=activity.user_name,
                amount=activity.amount,
                points=int(points) if isinstance(points, (int, float)) else activity.points,
                context_sent=True,
                created_at=utcnow(),
            )
        )
    insert_many(db, "twitch_activities", rows, unique="event_id", multirow=multirow)
