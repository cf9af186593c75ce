"""Many users at once: everybody reads their own answer, once; nobody gets another's or an error.

Which attempt carries each answer depends on the machine's load, so these tests do not assert it:
tests/unit/test_delivery_script.py decides the attempts of many users at once in fake time, and
bench/latency.py measures how fast the real stack answers 100 users (`make bench`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI, echo, message_text
from testing.reading import Reading, read_answer
from tests.conftest import Bot

#: a hundred users load every core: under pytest-xdist no other test runs meanwhile
pytestmark = pytest.mark.alone
LOAD_TIMEOUT = 2.5
#: real seconds the test waits at most for all generations to reach the model (a hang guard)
IN_FLIGHT_GUARD = 120.0


def slow_echo(messages: list[dict[str, Any]]) -> str:
    """Echo after 0.1–1.5 attempt timeouts, fixed per question (like a real model's spread): answers
    fall on WeChat's first and second attempts on an idle machine, later ones on a busy machine."""
    question = str(messages[-1]["content"])
    spread = int(hashlib.sha1(question.encode()).hexdigest(), 16) % 1000 / 1000
    time.sleep(LOAD_TIMEOUT * (0.1 + 1.4 * spread))
    return echo(messages)


@pytest.mark.slow
def test_hundred_users_at_once_each_read_their_own_answer_once(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    # all of it in one Python process (100 simulated users, web, worker): attempts of half WeChat's
    # length, and a wide margin (the bot answers an attempt at most 1.5 s after it saw the POST), so
    # that a POST kept waiting for a web thread by the load still gets its reply inside the attempt
    bot = make_bot(worker_threads=128, wechat_attempt_timeout=LOAD_TIMEOUT, wechat_reply_margin=1.0)
    fake_openai.set_behavior(reply=slow_echo)

    def one_user(index: int) -> Reading:
        sim = bot.simulator(attempt_timeout=LOAD_TIMEOUT)
        return read_answer(sim, f"user-{index}", f"question {index}")

    with ThreadPoolExecutor(max_workers=100) as pool:
        readings = list(pool.map(one_user, range(100)))
    assert [r.problems for r in readings if r.problems] == []  # no HTTP error, no invalid reply
    for index, reading in enumerate(readings):
        assert reading.text == f"echo: question {index}", reading
        assert reading.after == texts.NOTHING_MORE, reading  # and not a second time
    asked = Counter(message_text(request["messages"][-1]) for request in fake_openai.chat_requests())
    assert asked == Counter(f"question {index}" for index in range(100))  # one LLM call each


@pytest.mark.slow
def test_two_hundred_generations_in_flight_with_the_production_worker(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, start_worker_process: Callable[..., Any]
) -> None:
    """The job workers with the `make run` default (2 processes, 128 threads) stream 200 at once."""
    bot = make_bot(with_worker=False)
    gate = threading.Event()

    def held_echo(messages: list[dict[str, Any]]) -> str:
        gate.wait(IN_FLIGHT_GUARD)
        return echo(messages)

    # the model answers nobody until all 200 requests have reached it: they are in flight together
    fake_openai.set_behavior(reply=held_echo)
    start_worker_process(processes=2, threads=128, config_overrides={"openai_timeout": IN_FLIGHT_GUARD})
    sims = [bot.simulator(attempt_timeout=0.3) for _ in range(4)]
    for sim in sims:
        sim.attempts = 1

    def ask(index: int) -> None:
        sims[index % 4].send_text(f"user-{index}", f"q{index}")

    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(ask, range(200)))
        deadline = time.monotonic() + IN_FLIGHT_GUARD
        while len(fake_openai.chat_requests()) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(fake_openai.chat_requests()) == 200
    finally:
        gate.set()
