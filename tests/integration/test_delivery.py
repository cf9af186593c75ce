"""The 5-second logic as WeChat sees it: real server, real Redis, real worker, simulated retries."""

from __future__ import annotations

import time

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import ATTEMPT_TIMEOUT, Bot


def test_fast_answer_goes_out_on_the_first_attempt_at_once(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(first_token_delay=0.3)
    delivery = bot.simulator().send_text("user-1", "hello")
    assert delivery.text == "echo: hello"
    assert len(delivery.attempts) == 1
    assert delivery.elapsed < ATTEMPT_TIMEOUT - 0.3  # not after a fixed poll or the deadline


def test_answer_ready_after_the_first_timeout_goes_out_on_the_second_attempt(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 1.3)
    delivery = bot.simulator().send_text("user-1", "slow question")
    assert delivery.text == "echo: slow question"
    assert [a.status for a in delivery.attempts] == ["timeout", 200]
    assert len(fake_openai.chat_requests()) == 1


def test_answer_later_than_three_attempts_is_fetched_by_the_next_message(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 3.4)
    sim = bot.simulator()
    first = sim.send_text("user-1", "very slow")
    assert first.text == texts.STILL_WORKING
    assert len(first.attempts) == 3
    fake_openai.set_behavior(first_token_delay=0.0)
    fetched = sim.send_text("user-1", "继续")
    assert fetched.text is not None
    assert fetched.text.endswith("echo: very slow")
    assert "very slow" in fetched.text.splitlines()[0]  # says which question it answers
    assert len(fake_openai.chat_requests()) == 1


def test_a_new_question_while_an_answer_waits_is_queued_not_lost(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 3.4)
    sim = bot.simulator()
    assert sim.send_text("user-1", "question one").text == texts.STILL_WORKING
    time.sleep(ATTEMPT_TIMEOUT)  # the late answer is ready now
    fake_openai.set_behavior(first_token_delay=0.0)
    second = sim.send_text("user-1", "question two")
    assert second.text is not None
    assert "echo: question one" in second.text and second.text.endswith(texts.QUEUED_NOTE)
    third = sim.send_text("user-1", "继续")
    assert third.text is not None and third.text.endswith("echo: question two")
    assert sim.send_text("user-1", "继续").text == texts.NOTHING_MORE


def test_a_ready_answer_does_not_wait_behind_a_slow_late_one(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 5)
    sim = bot.simulator()
    assert sim.send_text("user-1", "slow one").text == texts.STILL_WORKING
    fake_openai.set_behavior(first_token_delay=0.0)
    assert sim.send_text("user-1", "quick one").text == "echo: quick one"  # not held by "slow one"
    time.sleep(ATTEMPT_TIMEOUT * 2)
    late = sim.send_text("user-1", "继续").text
    assert late is not None and late.endswith("echo: slow one") and "slow one" in late.splitlines()[0]
    assert sim.send_text("user-1", "继续").text == texts.NOTHING_MORE


def test_every_attempt_of_one_message_makes_one_llm_call(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 2.2)
    delivery = bot.simulator().send_text("user-1", "once")
    assert len(delivery.attempts) == 3
    assert delivery.text == "echo: once"
    assert len(fake_openai.chat_requests()) == 1
