"""Where module responses go (DESIGN §5): chat to the platform's collector, the rest
to the entity's overlay.

``chat`` responses are pushed once to ``<collector endpoint>/api/<platform>/responses``
with the service key, off the request thread, retried with back-off while the
collector is briefly down. ``media``/``ticker``/``form`` responses are published on the
store channel ``overlay:<entity_id>`` and kept (last 50) for replay. Every response is
recorded in ``module_responses`` with its delivery status.
"""

from __future__ import annotations

import json
import logging
import time

from waddlebot.contracts import ModuleResponse
from waddlebot.db import Database
from waddlebot.green import Background
from waddlebot.http import HttpError, JsonCaller
from waddlebot.sql import Writes
from waddlebot.store import Store, StoreUnavailable

from .batches import BatchWriter

log = logging.getLogger("waddlebot.router.delivery")

OVERLAY_REPLAY = 50


def overlay_channel(entity_id: str) -> str:
    """Store pub/sub channel of an entity's overlay."""
    return f"overlay:{entity_id}"


class Delivery:
    """Pushes chat to collectors and overlay responses to the store, recording each."""

    def __init__(
        self,
        database: Database,
        store: Store,
        *,
        api_key: str,
        workers: int = 8,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
    ):
        self.database = database
        self.store = store
        self.api_key = api_key
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._pool = Background(workers, name="delivery")
        self._caller = JsonCaller(pool_size=workers * 2)
        self.delivered = 0
        self.failed = 0
        self._endpoints: dict[str, tuple[float, str | None]] = {}
        self.outcomes = OutcomeWriter(database)

    #: seconds a looked-up collector endpoint is reused (a re-registration shows up after)
    endpoint_ttl = 2.0

    def collector_endpoint(self, platform: str) -> str | None:
        """The endpoint of the collector registered last for ``platform`` (cached briefly)."""
        cached = self._endpoints.get(platform)
        if cached is not None and time.monotonic() - cached[0] < self.endpoint_ttl:
            return cached[1]
        endpoint = self._lookup_endpoint(platform)
        if endpoint is not None:  # a collector may register any moment: never cache "none"
            self._endpoints[platform] = (time.monotonic(), endpoint)
        return endpoint

    def forget_endpoints(self) -> None:
        """Drop cached collector endpoints (after a registration in this process)."""
        self._endpoints.clear()

    def _lookup_endpoint(self, platform: str) -> str | None:
        with self.database.connection() as db:
            row = (
                db(
                    (db.collector_modules.platform == platform)
                    & (db.collector_modules.module_type == "collector")
                    & (db.collector_modules.status == "active")
                )
                .select(
                    db.collector_modules.endpoint_url,
                    orderby=~db.collector_modules.updated_at | ~db.collector_modules.id,
                    limitby=(0, 1),
                )
                .first()
            )
        return row.endpoint_url if row else None

    @staticmethod
    def _record(writes: Writes, response: ModuleResponse, context: dict) -> None:
        writes.insert(
            "module_responses",
            execution_id=context.get("execution_id"),
            session_id=context.get("session_id"),
            entity_id=context["entity_id"],
            module_name=response.module_name,
            success=response.success,
            response_action=response.response_action,
            response_data=response.to_dict(),
            media_type=response.media_type,
            media_url=response.media_url,
            ticker_text=response.ticker_text,
            ticker_duration=response.ticker_duration
            if response.response_action == "ticker"
            else None,
            chat_message=response.chat_message,
            error_message=response.error_message,
            processing_time_ms=response.processing_time_ms,
            delivery_status="pending",
            delivery_attempts=0,
        )

    def dispatch(
        self, db, response: ModuleResponse, *, context: dict, moderation: dict | None = None
    ) -> None:
        """Record a response and send it on its way (non-blocking for chat)."""
        writes = Writes(db, synchronous_commit=False)
        self._record(writes, response, context)
        [row_id] = writes.run()
        if response.response_action == "chat":
            if response.chat_message or moderation:
                db.commit()
                self._pool.submit(self._push_chat, row_id, response, dict(context), moderation)
            return
        self._publish_overlay(db, row_id, response, context)

    def dispatch_all(
        self,
        db,
        responses: list[ModuleResponse],
        *,
        context: dict,
        writes: Writes | None = None,
    ) -> None:
        """Record several responses of one answer; chat lines reach the collector in order.

        ``writes`` (other statements of the same execution) go in the same round trip.
        """
        writes = writes if writes is not None else Writes(db, synchronous_commit=False)
        before = len(writes)
        for response in responses:
            self._record(writes, response, context)
        row_ids = writes.run()[before:]
        chats = []
        for row_id, response in zip(row_ids, responses, strict=True):
            if response.response_action != "chat":
                self._publish_overlay(db, row_id, response, context)
            elif response.chat_message:
                chats.append((row_id, response))
        if chats:
            db.commit()
            self._pool.submit(self._push_in_order, chats, dict(context))

    def _push_in_order(self, chats: list, context: dict) -> None:
        for row_id, response in chats:
            self._push_chat(row_id, response, context, None)

    def _publish_overlay(self, db, row_id: int, response: ModuleResponse, context: dict):
        event = {"id": row_id, "entity_id": context["entity_id"], **response.to_dict()}
        payload = json.dumps(event)
        try:
            self.store.push_recent(
                f"overlay:recent:{context['entity_id']}", payload, OVERLAY_REPLAY
            )
            self.store.publish(overlay_channel(context["entity_id"]), payload)
            status = "published"
        except StoreUnavailable:
            status = "failed"
        db(db.module_responses.id == row_id).update(delivery_status=status, delivery_attempts=1)

    def _push_chat(
        self, row_id: int, response: ModuleResponse, context: dict, moderation: dict | None
    ) -> None:
        platform = context["platform"]
        body = {
            **response.to_dict(),
            "entity_id": context["entity_id"],
            "platform": platform,
            "server_id": context["server_id"],
            "channel_id": context["channel_id"],
            "user_id": context.get("user_id"),
            "session_id": context.get("session_id"),
            "execution_id": context.get("execution_id"),
        }
        if moderation:
            body["moderation"] = moderation
        status, attempts = "failed", 0
        for attempt in range(1, self.attempts + 1):
            attempts = attempt
            endpoint = self.collector_endpoint(platform)
            if endpoint is None:
                status = "no_collector"
                break
            url = f"{endpoint.rstrip('/')}/api/{platform}/responses"
            try:
                answer = self._caller.call(
                    "POST",
                    url,
                    payload=body,
                    timeout=self.timeout,
                    headers={"X-API-Key": self.api_key},
                )
                if answer.status < 300:
                    status = "delivered"
                    break
                if 400 <= answer.status < 500 and answer.status != 429:
                    log.warning("collector %s refused reply: HTTP %s", url, answer.status)
                    break
            except HttpError as exc:
                self._endpoints.pop(platform, None)
                log.info(
                    "collector %s unreachable (attempt %d): %s", url, attempt, type(exc).__name__
                )
            if attempt < self.attempts:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        if status == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
        self.outcomes.put(row_id, status, attempts)

    def shutdown(self) -> None:
        """Finish pending deliveries and record their outcomes (tests, shutdown)."""
        self._pool.shutdown(wait=True)
        self.outcomes.flush()


class OutcomeWriter(BatchWriter):
    """Delivery outcomes of chat responses, written to ``module_responses`` in batches.

    A push ends on a delivery thread; recording its outcome there cost a pooled
    connection, an UPDATE and a COMMIT per reply. Outcomes are instead collected and
    written every ``interval`` seconds by one thread, as one statement on PostgreSQL.
    The row shows ``pending`` until then (at most ``keep`` outcomes wait at once).
    """

    name = "delivery-outcomes"
    what = "delivery outcomes"

    def __init__(self, database: Database, *, interval: float = 0.05, keep: int = 100_000):
        super().__init__(database, interval=interval)
        self.keep = keep

    def put(self, row_id: int, status: str, attempts: int) -> None:
        """Queue the outcome of one response."""

        def update(pending: dict) -> None:
            if len(pending) < self.keep:
                pending[row_id] = (status, attempts)

        self._add(update)

    def _write(self, db, batch: dict) -> None:
        _write_outcomes(db, batch)

    def _restore(self, pending: dict, batch: dict) -> None:
        for row_id, outcome in batch.items():
            pending.setdefault(row_id, outcome)  # a newer outcome of the row wins


def _write_outcomes(db, outcomes: dict[int, tuple[str, int]]) -> None:
    rows = [(row_id, status, attempts) for row_id, (status, attempts) in outcomes.items()]
    Writes(db, synchronous_commit=False).update_by_id(
        "module_responses", ("delivery_status", "delivery_attempts"), rows
    ).run()
