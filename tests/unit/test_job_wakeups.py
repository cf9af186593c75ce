"""An idle job worker's consumer starts a job as soon as it is queued: the wake-up published next to the
enqueue ends its wait (WakingRedisBroker). The idle wait here is a minute: a consumer that missed the
wake-up would still be waiting when the hang guard gives up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis

from bot.answering.jobs import QUEUE, WakingRedisBroker, make_broker
from bot.config import load_settings
from bot.ops.redis_server import RedisServer
from bot.store import keys

IDLE_MS = 60_000
#: real seconds the test waits for a thread or a subscription at most (a hang guard, not a speed)
GUARD = 30.0


@pytest.fixture
def broker(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[WakingRedisBroker]:
    settings = load_settings(wechat_token="t", redis_url=redis_server.url, openai_api_key="x")
    made = make_broker(settings)
    assert isinstance(made, WakingRedisBroker)
    made.declare_queue(QUEUE)
    yield made
    made.client.close()
    made.client.connection_pool.disconnect()


def noop() -> None:
    """The job of these tests (never run: the tests only fetch it)."""


def wait_subscribed(client: redis.Redis, channel: str) -> None:
    deadline = time.monotonic() + GUARD
    while not dict(client.pubsub_numsub(channel)).get(channel):
        assert time.monotonic() < deadline, "the consumer never subscribed to its wake-ups"
        time.sleep(0.01)


def test_an_idle_consumer_fetches_a_job_as_soon_as_it_is_queued(
    broker: WakingRedisBroker, redis_client: redis.Redis
) -> None:
    actor = dramatiq.Actor(noop, broker=broker, actor_name="noop", queue_name=QUEUE, priority=0, options={})
    consumer = broker.consume(QUEUE, prefetch=1, timeout=IDLE_MS)
    looked: list[object] = []
    idle = threading.Thread(target=lambda: looked.append(next(consumer)))
    try:
        idle.start()  # the queue is empty: the consumer waits for a wake-up (or a minute)
        wait_subscribed(redis_client, keys.job_wakeup(QUEUE))
        sent = actor.send()
        idle.join(GUARD)
        assert not idle.is_alive(), "the consumer slept through the wake-up"
        assert looked == [None]  # woken: it looks at the queue again at once
        found = next(consumer)
        assert found is not None and found.message_id == sent.message_id
        consumer.ack(found)
    finally:
        if idle.is_alive():  # a failed run: end the wait rather than leave the thread behind
            broker.wakeups.publish(QUEUE)
            idle.join(GUARD)
        consumer.close()


def test_a_delayed_job_wakes_nobody_and_delay_queues_do_not_subscribe(
    broker: WakingRedisBroker, redis_client: redis.Redis
) -> None:
    actor = dramatiq.Actor(noop, broker=broker, actor_name="noop", queue_name=QUEUE, priority=0, options={})
    listener = redis_client.pubsub()
    listener.subscribe(keys.job_wakeup(QUEUE), keys.job_wakeup(f"{QUEUE}.DQ"))
    try:
        actor.send_with_options(delay=60_000)
        actor.send()
        redis_client.publish(keys.job_wakeup(QUEUE), "end")  # after what the sends published
        heard: list[tuple[str, str]] = []
        deadline = time.monotonic() + GUARD
        while ("end" not in [data for _, data in heard]) and time.monotonic() < deadline:
            message = listener.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                heard.append((message["channel"], message["data"]))
        assert heard == [(keys.job_wakeup(QUEUE), "1"), (keys.job_wakeup(QUEUE), "end")]
    finally:
        listener.close()
    delayed = broker.consume(f"{QUEUE}.DQ", prefetch=1, timeout=10)
    try:
        assert next(delayed) is not None  # a delayed message is fetched by polling, as before
        assert delayed.pubsub is None  # type: ignore[attr-defined]
    finally:
        delayed.close()
