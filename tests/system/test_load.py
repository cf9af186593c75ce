"""Many users at once: everybody gets their own answer, nobody sees WeChat's failure page."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI, echo
from testing.simulator import Delivery
from tests.conftest import Bot

LOAD_TIMEOUT = 2.5


def slow_echo(messages: list[dict[str, Any]]) -> str:
    """Echo after 0.1–2.0 attempt timeouts, fixed per question (like a real model's spread)."""
    question = str(messages[-1]["content"])
    spread = int(hashlib.sha1(question.encode()).hexdigest(), 16) % 1000 / 1000
    time.sleep(LOAD_TIMEOUT * (0.1 + 1.9 * spread))
    return echo(messages)


@pytest.mark.slow
def test_hundred_users_at_once_all_get_their_own_answer(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    # all of it in one Python process (100 simulated users, web, worker): give each attempt
    # WeChat's proportions at half its length instead of the suite's shortest timeout
    bot = make_bot(worker_threads=128, wechat_attempt_timeout=LOAD_TIMEOUT, wechat_reply_margin=0.6)
    fake_openai.set_behavior(reply=slow_echo)

    def one_user(index: int) -> Delivery:
        return bot.simulator(attempt_timeout=LOAD_TIMEOUT).send_text(f"user-{index}", f"question {index}")

    with ThreadPoolExecutor(max_workers=100) as pool:
        deliveries = list(pool.map(one_user, range(100)))
    assert not [d for d in deliveries if d.user_sees_failure]
    late = [d.openid for d in deliveries if d.text == texts.STILL_WORKING]
    assert late == []  # every answer takes < 2 attempt timeouts: all fit in WeChat's 3 attempts
    for index, delivery in enumerate(deliveries):
        assert delivery.text == f"echo: question {index}"
    assert len(fake_openai.chat_requests()) == 100


@pytest.mark.slow
def test_two_hundred_generations_in_flight_with_the_production_worker(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, start_worker_process: Callable[..., Any]
) -> None:
    """The job workers with the `make run` default (2 processes, 128 threads) stream 200 at once."""
    bot = make_bot(with_worker=False)
    fake_openai.set_behavior(first_token_delay=6.0)
    start_worker_process(processes=2, threads=128)
    sims = [bot.simulator(attempt_timeout=0.3) for _ in range(4)]
    for sim in sims:
        sim.attempts = 1

    def ask(index: int) -> None:
        sims[index % 4].send_text(f"user-{index}", f"q{index}")

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(ask, range(200)))
    deadline = time.monotonic() + 5.0
    while len(fake_openai.chat_requests()) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    # no stream has produced a token yet (6 s delay), so all of these are in flight together
    assert len(fake_openai.chat_requests()) == 200
