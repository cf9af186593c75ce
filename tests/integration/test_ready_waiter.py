"""bot/delivery/waiter.py: the one pub/sub listener per process that wakes waiting replies."""

from __future__ import annotations

import threading

import pytest
import redis

from bot.delivery import waiter as waiter_module
from bot.delivery.waiter import ReadyWaiter
from bot.ops.redis_server import RedisServer
from bot.store.notices import ReadyNotices
from testing.patience import wait_for


def own_waiter(redis_server: RedisServer) -> ReadyWaiter:
    """A waiter with a client of its own (close() closes it), as the app gives it."""
    return ReadyWaiter(redis.Redis.from_url(redis_server.url, decode_responses=True))


def test_a_notice_wakes_the_replies_waiting_for_its_user_only(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    waiter = own_waiter(redis_server)
    try:
        with waiter.ticket("user-1") as mine, waiter.ticket("user-2") as other:
            ReadyNotices(redis_client).publish("user-1")
            assert mine.wait(30)
            assert not other.event.is_set()
    finally:
        waiter.close()


def test_close_ends_the_listener_at_once_not_at_its_next_recheck(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiter_module, "RECHECK_SECONDS", 60.0)  # a listener left to its read waits a minute
    waiter = own_waiter(redis_server)
    with waiter.ticket("user-1"):
        pass
    listener = waiter._listener
    assert listener is not None
    wait_for(lambda: any(t is listener for t in threading.enumerate()), what="the listener")
    waiter.close()  # joins it for up to 2 s
    assert not listener.is_alive()
