"""/livez, /readyz and /healthz: what each one checks, and that none shows an internal error.

Ages are made, not waited for: a heartbeat is written with the time it should have (by the Redis
server's clock), instead of sleeping until a real one gets old.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from bot.store import keys
from bot.store.workers import WorkerStore, new_job_worker_id
from testing.patience import wait_for
from tests.conftest import Bot, start_worker


def get(bot: Bot, path: str) -> tuple[int, str]:
    response = bot.app.test_client().get(path)
    return response.status_code, response.get_data(as_text=True)


def server_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


def beat(client: redis.Redis, worker_id: str, seconds_ago: float) -> None:
    """A heartbeat as Dramatiq writes it (ms since the epoch), `seconds_ago` by the Redis server's clock."""
    client.zadd(keys.JOB_HEARTBEATS, {worker_id: server_ms(client) - seconds_ago * 1000})


@pytest.fixture
def redis_down(make_bot: Callable[..., Bot], refused_port: int) -> Bot:
    return make_bot(with_worker=False, redis_url=f"redis://127.0.0.1:{refused_port}/0")


# --- the store ------------------------------------------------------------------------------------


def test_no_heartbeat_on_record(redis_client: redis.Redis) -> None:
    assert WorkerStore(redis_client).freshest_heartbeat_age() is None


def test_age_of_the_freshest_job_worker_by_the_redis_clock(redis_client: redis.Redis) -> None:
    beat(redis_client, new_job_worker_id(), seconds_ago=42)
    beat(redis_client, new_job_worker_id(), seconds_ago=300)
    age = WorkerStore(redis_client).freshest_heartbeat_age()
    assert age is not None and 42 <= age < 42 + 30


def test_senders_heartbeats_do_not_count(redis_client: redis.Redis) -> None:
    """Every Dramatiq broker command writes a heartbeat, a web process's enqueue too: only brokers
    named as job workers count, or a web tier that keeps enqueueing would hide dead workers."""
    beat(redis_client, "0b8f6c1e-5a0c-4ad0-9a53-6d0b3c1f2e11", seconds_ago=0)  # Dramatiq's own uuid4 id
    beat(redis_client, new_job_worker_id(), seconds_ago=42)
    age = WorkerStore(redis_client).freshest_heartbeat_age()
    assert age is not None and age >= 42


def test_a_heartbeat_from_a_clock_ahead_is_age_zero(redis_client: redis.Redis) -> None:
    beat(redis_client, new_job_worker_id(), seconds_ago=-5)
    assert WorkerStore(redis_client).freshest_heartbeat_age() == 0.0


def test_the_store_raises_when_redis_is_down(refused_port: int) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{refused_port}/0", decode_responses=True)
    with pytest.raises(redis.exceptions.ConnectionError):
        WorkerStore(client).freshest_heartbeat_age()
    client.close()


# --- the endpoints --------------------------------------------------------------------------------


def test_livez_needs_nothing_but_the_process(redis_down: Bot) -> None:
    assert get(redis_down, "/livez") == (200, "ok")


def test_healthz_and_readyz_say_redis_is_unreachable_in_plain_words(redis_down: Bot) -> None:
    for path in ("/healthz", "/readyz"):
        assert get(redis_down, path) == (503, "redis: unreachable"), path


def test_healthz_is_ok_while_redis_answers_even_without_workers(make_bot: Callable[..., Bot]) -> None:
    assert get(make_bot(with_worker=False), "/healthz") == (200, "ok")


def test_readyz_without_any_worker(make_bot: Callable[..., Bot]) -> None:
    assert get(make_bot(with_worker=False), "/readyz") == (503, "workers: no heartbeat")


def test_readyz_is_not_fooled_by_the_web_tiers_own_enqueues(
    make_bot: Callable[..., Bot], redis_client: redis.Redis
) -> None:
    bot = make_bot(with_worker=False)
    bot.ext["jobs"].enqueue("an-answer-nobody-will-generate")
    assert redis_client.zcard(keys.JOB_HEARTBEATS) == 1  # the web's broker left a fresh heartbeat
    assert get(bot, "/readyz") == (503, "workers: no heartbeat")


def test_readyz_names_the_age_of_the_last_heartbeat(
    make_bot: Callable[..., Bot], redis_client: redis.Redis
) -> None:
    bot = make_bot(with_worker=False)  # worker_heartbeat_timeout is 2 s in the tests
    beat(redis_client, new_job_worker_id(), seconds_ago=42)
    status, body = get(bot, "/readyz")
    found = re.fullmatch(r"workers: no heartbeat for (\d+) s", body)
    assert status == 503 and found is not None, body
    assert 42 <= int(found.group(1)) < 42 + 30
    beat(redis_client, new_job_worker_id(), seconds_ago=1)  # within the timeout
    assert get(bot, "/readyz") == (200, "ok")


@pytest.fixture
def in_process_worker(make_bot: Callable[..., Bot]) -> Iterator[Bot]:
    """A bot with an in-process Dramatiq worker whose broker is named as a job worker's, as
    bot/answering/worker.py names it in a worker process."""
    bot = make_bot(with_worker=False)
    bot.ext["jobs"].broker.broker_id = new_job_worker_id()
    worker = start_worker(bot.app, threads=2)
    yield bot
    worker.stop()


def test_readyz_with_an_in_process_worker(in_process_worker: Bot) -> None:
    wait_for(lambda: get(in_process_worker, "/readyz") == (200, "ok"))


@pytest.mark.slow
def test_readyz_with_a_worker_process_behind_gunicorn(
    start_web_process: Callable[..., str], start_worker_process: Callable[..., Any]
) -> None:
    """The production pieces: gunicorn's /readyz sees the heartbeats of a job-worker process."""
    base = start_web_process().removesuffix("/wechat")
    assert requests.get(base + "/livez", timeout=10).text == "ok"
    assert requests.get(base + "/readyz", timeout=10).status_code == 503
    process = start_worker_process()
    wait_for(lambda: requests.get(base + "/readyz", timeout=10).status_code == 200, timeout=60)
    assert process.poll() is None
    assert requests.get(base + "/healthz", timeout=10).text == "ok"  # kept for existing setups
