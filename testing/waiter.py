"""A stand-in for bot.delivery.waiter.ReadyWaiter that waits in fake time (testing.clock.FakeClock).

PassiveDelivery uses its waiter as `with waiter.ticket(openid) as ticket: ... ticket.wait(seconds)`.
A FakeTicket's wait suspends the calling task in fake time for at most RECHECK_SECONDS (like the
real ticket), and returns early when a notice for its user arrives.

The notices are the bot's real ones: ReadyBus subscribes to the ready pattern on the real Redis,
and after every step of the clock sends a PING through that subscription; Redis answers it after
every notice published before it, so a notice sent at fake time t wakes its waiters at t — exactly,
whoever sent it (any process, a pipeline, a script) and whatever the machine's load.
"""

from __future__ import annotations

import itertools
import time

import redis

from bot.delivery.waiter import RECHECK_SECONDS
from bot.store import keys
from testing.clock import FakeClock, Task

#: real seconds to wait for Redis to answer the PING that closes a round of notices (a hang guard)
SYNC_GUARD = 30.0


class FakeTicket:
    def __init__(self, waiter: FakeWaiter, openid: str) -> None:
        self.waiter = waiter
        self.openid = openid
        self.task: Task | None = None
        self.woken = False

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` fake seconds (at most RECHECK_SECONDS); True when a notice woke it."""
        clock = self.waiter.clock
        until = clock.now + max(0.0, min(timeout, self.waiter.recheck))
        self.woken = False
        self.task = clock.current_task()
        if self.task is None:  # called from the test's own thread: run the world meanwhile
            return clock.run_until(lambda: self.woken, limit=until)
        try:
            return clock.suspend(until, pokeable=True)
        finally:
            self.task = None

    def wake(self) -> None:
        self.woken = True
        if self.task is not None:
            self.waiter.clock.poke(self.task)

    def __enter__(self) -> FakeTicket:
        self.waiter.tickets.setdefault(self.openid, []).append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        waiting = self.waiter.tickets.get(self.openid, [])
        if self in waiting:
            waiting.remove(self)
        if not waiting:
            self.waiter.tickets.pop(self.openid, None)


class FakeWaiter:
    """One web process's waiter: its tickets, woken by the notices a ReadyBus hears."""

    def __init__(self, clock: FakeClock, recheck: float = RECHECK_SECONDS) -> None:
        self.clock = clock
        self.recheck = recheck
        self.tickets: dict[str, list[FakeTicket]] = {}

    def ticket(self, openid: str) -> FakeTicket:
        return FakeTicket(self, openid)

    def wake(self, openid: str) -> None:
        for ticket in list(self.tickets.get(openid, ())):
            ticket.wake()

    def close(self) -> None:
        self.tickets.clear()


class ReadyBus:
    """Hears the ready notices on Redis after every step of the clock and wakes the waiters' tickets."""

    def __init__(self, clock: FakeClock, redis_url: str) -> None:
        self.clock = clock
        # undecoded: redis-py hands back the reply to a PING on a subscribed connection only as bytes
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(keys.READY_PATTERN)
        self.waiters: list[FakeWaiter] = []
        #: (fake time, openid) of every notice heard
        self.heard: list[tuple[float, str]] = []
        self._pings = itertools.count()
        self._prefix = keys.ready_channel("").encode()
        self.sync()  # the subscription is in place before anything runs
        clock.after_step(self.sync)

    def add(self, waiter: FakeWaiter) -> FakeWaiter:
        self.waiters.append(waiter)
        return waiter

    def sync(self) -> None:
        """Deliver every notice published so far."""
        token = f"sync-{next(self._pings)}".encode()
        self.pubsub.ping(token)
        deadline = time.monotonic() + SYNC_GUARD
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "pong" and message["data"] == token:
                return
            if message["type"] == "pmessage":
                openid = bytes(message["channel"]).removeprefix(self._prefix).decode()
                self.heard.append((self.clock.now, openid))
                for waiter in self.waiters:
                    waiter.wake(openid)
        raise RuntimeError(f"Redis did not answer a PING on the notice subscription within {SYNC_GUARD:g} s")

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()
