"""Outgoing chat within Twitch's limits, and moderation actions, off the request thread.

:class:`ChatSender` keeps a queue per channel and one background sender thread. Before
each message it records a hit in the channel's sliding window in the store (shared by
every replica when the store is Redis): 20 messages per 30 seconds, or 100 when the
bot is a moderator/VIP of the channel (learnt from the badges of its own messages).
A channel over its limit waits; other channels keep going. Moderation (deleting a
message) runs on a small pool with a moderator's user token.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from waddlebot.http import HttpError
from waddlebot.store import Store, StoreUnavailable
from waddlebot.twitch.helix import HelixClient, split_message

from .tokens import TokenStore

log = logging.getLogger("waddlebot.twitch.chat")

WINDOW_PREFIX = "twitch:chat:window:"
MODERATOR_PREFIX = "twitch:chat:moderator:"
#: how long a seen moderator badge counts (the badge is seen again on the bot's next line)
MODERATOR_TTL = 24 * 3600
#: attempts per message when Twitch is unreachable or failing
SEND_ATTEMPTS = 3


class ChatSender:
    """Per-channel queues drained by one sender thread through a sliding window."""

    def __init__(
        self,
        *,
        helix: HelixClient,
        store: Store,
        sender_id: str,
        limit: int = 20,
        moderator_limit: int = 100,
        window: float = 30.0,
        max_pending_per_channel: int = 500,
        retry_delay: float = 1.0,
    ):
        self.helix = helix
        self.store = store
        self.sender_id = sender_id
        self.limit = limit
        self.moderator_limit = moderator_limit
        self.window = window
        self.max_pending = max_pending_per_channel
        self.retry_delay = retry_delay
        self._pending: dict[str, collections.deque] = {}
        self._ready_at: dict[str, float] = {}
        self._order: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0

    # -- producer side ------------------------------------------------------------------
    def enqueue(self, broadcaster_id: str, text: str, *, reply_to: str | None = None) -> int:
        """Queue a message (split at 500 characters); returns how many messages were queued."""
        chunks = split_message(text)
        with self._cond:
            queue = self._pending.setdefault(broadcaster_id, collections.deque())
            accepted = 0
            for position, chunk in enumerate(chunks):
                if len(queue) >= self.max_pending:
                    self.dropped += len(chunks) - position
                    log.warning("chat queue of %s is full; dropping a reply", broadcaster_id)
                    break
                queue.append([chunk, reply_to if position == 0 else None, 0])
                accepted += 1
            if accepted and broadcaster_id not in self._order:
                self._order.append(broadcaster_id)
            self._cond.notify()
        return accepted

    def pending(self) -> int:
        """Messages waiting to be sent, all channels together."""
        with self._cond:
            return sum(len(q) for q in self._pending.values())

    def mark_moderator(self, broadcaster_id: str, is_moderator: bool) -> None:
        """Record whether the bot may use the higher (moderator/VIP) rate in a channel."""
        key = MODERATOR_PREFIX + broadcaster_id
        try:
            if is_moderator:
                self.store.set(key, "1", ttl=MODERATOR_TTL)
            else:
                self.store.delete(key)
        except StoreUnavailable:
            log.warning("store unavailable; moderator status of %s not recorded", broadcaster_id)

    def limit_for(self, broadcaster_id: str) -> int:
        """Messages allowed per window in this channel."""
        try:
            elevated = self.store.get(MODERATOR_PREFIX + broadcaster_id) is not None
        except StoreUnavailable:
            elevated = False
        return self.moderator_limit if elevated else self.limit

    # -- sender side --------------------------------------------------------------------
    def _next(self, now: float) -> tuple[tuple[str, list] | None, float]:
        """The next (channel, message) allowed now, else None and how long to wait."""
        wait = 1.0
        for _ in range(len(self._order)):
            channel = self._order[0]
            self._order.rotate(-1)
            queue = self._pending.get(channel)
            if not queue:
                self._order.remove(channel)
                self._pending.pop(channel, None)
                self._ready_at.pop(channel, None)
                continue
            ready_at = self._ready_at.get(channel, 0.0)
            if ready_at > now:
                wait = min(wait, ready_at - now)
                continue
            try:
                verdict = self.store.hit_window(
                    WINDOW_PREFIX + channel, self.limit_for(channel), self.window
                )
            except StoreUnavailable:
                self._ready_at[channel] = now + 1.0
                wait = min(wait, 1.0)
                continue
            if not verdict.allowed:
                delay = max(verdict.retry_after, 0.05)
                self._ready_at[channel] = now + delay
                wait = min(wait, delay)
                continue
            return (channel, queue.popleft()), 0.0
        return None, wait

    def run_once(self, *, block: float = 0.0) -> bool:
        """Send at most one message that the window allows; True if one was sent or tried."""
        with self._cond:
            job, wait = self._next(time.monotonic())
            if job is None:
                if block > 0:
                    self._cond.wait(min(wait, block))
                return False
        channel, (text, reply_to, attempts) = job
        try:
            self.helix.send_chat_message(
                channel, text, sender_id=self.sender_id, reply_parent_message_id=reply_to
            )
            self.sent += 1
        except HttpError as exc:
            retryable = exc.status is None or exc.status >= 500
            if retryable and attempts + 1 < SEND_ATTEMPTS:
                with self._cond:
                    self._pending.setdefault(channel, collections.deque()).appendleft(
                        [text, reply_to, attempts + 1]
                    )
                    if channel not in self._order:
                        self._order.append(channel)
                    self._ready_at[channel] = time.monotonic() + self.retry_delay
            else:
                self.dropped += 1
                log.warning("chat message to %s not sent: %s", channel, exc)
        except Exception:  # noqa: BLE001 - the sender thread must survive anything
            self.dropped += 1
            log.exception("chat message to %s failed", channel)
        return True

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.run_once(block=1.0)

    def start(self) -> None:
        """Start the daemon sender thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="twitch-chat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the sender thread (tests, shutdown)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Moderator:
    """Deletes chat messages with the bot's moderator token, or the broadcaster's."""

    def __init__(self, *, helix: HelixClient, tokens: TokenStore, bot_user_id: str | None):
        self.helix = helix
        self.tokens = tokens
        self.bot_user_id = bot_user_id
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="twitch-moderation")
        self.deleted = 0
        self.failed = 0

    def delete_later(self, broadcaster_id: str, message_id: str) -> None:
        """Delete a message in the background."""
        self._pool.submit(self.delete, broadcaster_id, message_id)

    def delete(self, broadcaster_id: str, message_id: str) -> bool:
        """Delete a message now; False (logged) when no moderator token can do it."""
        for moderator_id in (self.bot_user_id, broadcaster_id):
            if not moderator_id:
                continue
            token = self.tokens.provider(moderator_id)
            if token is None:
                continue
            try:
                self.helix.delete_chat_message(
                    broadcaster_id, moderator_id, message_id, token=token
                )
            except HttpError as exc:
                log.warning("deleting message %s in %s failed: %s", message_id, broadcaster_id, exc)
                continue
            self.deleted += 1
            return True
        self.failed += 1
        log.warning(
            "cannot delete message %s in %s: no connected moderator token",
            message_id,
            broadcaster_id,
        )
        return False
