"""Wake waiting webhook requests the moment something is ready for their user.

One pub/sub connection per process (not one per waiting request): a listener thread receives
`ready:<openid>` notices and sets the events of the requests waiting for that user. Waiters
also re-check Redis on a short period, so a notice lost during a reconnect costs at most that.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import suppress

import redis

from bot.store.notices import ReadyNotices

log = logging.getLogger(__name__)

#: a waiter re-checks Redis at least this often even without a notice
RECHECK_SECONDS = 0.5


class Ticket:
    """A registration for one user's notices; `wait` returns early when one arrives."""

    def __init__(self, waiter: ReadyWaiter, openid: str) -> None:
        self.waiter = waiter
        self.openid = openid
        self.event = threading.Event()

    def wait(self, timeout: float) -> bool:
        woke = self.event.wait(max(0.0, min(timeout, RECHECK_SECONDS)))
        self.event.clear()
        return woke

    def __enter__(self) -> Ticket:
        self.waiter.register(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.waiter.unregister(self)


class ReadyWaiter:
    def __init__(self, client: redis.Redis) -> None:
        """`client`: a connection pool of its own, without a socket timeout (the listener idles)."""
        self.redis = client
        self.notices = ReadyNotices(client)
        self._tickets: dict[str, set[Ticket]] = {}
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._pid = 0
        self._subscribed = threading.Event()
        self._closed = False

    def ticket(self, openid: str) -> Ticket:
        return Ticket(self, openid)

    def register(self, ticket: Ticket) -> None:
        self._ensure_listener()
        with self._lock:
            self._tickets.setdefault(ticket.openid, set()).add(ticket)

    def unregister(self, ticket: Ticket) -> None:
        with self._lock:
            waiting = self._tickets.get(ticket.openid)
            if waiting is not None:
                waiting.discard(ticket)
                if not waiting:
                    del self._tickets[ticket.openid]

    def _ensure_listener(self) -> None:
        """Start the listener lazily, and again after a fork (gunicorn workers)."""
        with self._lock:
            if self._listener is not None and self._pid == os.getpid() and self._listener.is_alive():
                return
            self._pid = os.getpid()
            self._subscribed.clear()
            self._listener = threading.Thread(target=self._listen, name="ready-waiter", daemon=True)
            self._listener.start()
        self._subscribed.wait(timeout=1.0)

    def close(self) -> None:
        """Stop the listener (tests and graceful shutdown): a notice for nobody ends its wait at once,
        instead of at its next RECHECK_SECONDS."""
        self._closed = True
        if self._listener is not None:
            with suppress(redis.exceptions.RedisError):
                self.notices.publish("")
            self._listener.join(timeout=2)
        self.redis.close()

    def _listen(self) -> None:
        while not self._closed:
            try:
                with self.notices.subscribe() as pubsub:
                    self._subscribed.set()
                    while not self._closed:
                        message = pubsub.get_message(timeout=RECHECK_SECONDS)
                        if message and message.get("type") == "pmessage":
                            self._wake(self.notices.openid_of(str(message["channel"])))
            except redis.exceptions.RedisError as exc:
                if not self._closed:
                    log.warning("ready listener lost Redis (%s); retrying", exc)
                    time.sleep(0.5)

    def _wake(self, openid: str) -> None:
        with self._lock:
            waiting = list(self._tickets.get(openid, ()))
        for ticket in waiting:
            ticket.event.set()
