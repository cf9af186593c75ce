"""The 5-second logic end to end: real HTTP server, real Redis and pub/sub waiter, real Dramatiq worker,
the OpenAI SDK against the loopback fake, and the simulator's real retries.

Which attempt carries an answer, and when, is decided in fake time by the scripted tests
(tests/unit/test_delivery_script.py); how fast the real stack is, bench/ measures. The assertions
here hold on a machine of any speed: the user reads their own answer exactly once, on whichever
attempt or message, and a message costs one LLM call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wechatpy import parse_message

from bot import texts
from bot.store.pushes import dedup_key
from testing.fakes.openai_server import FakeOpenAI, echo
from testing.reading import read_answer
from tests.conftest import Bot

#: real seconds a held-back model waits for the test at most (a hang guard)
GATE_GUARD = 60.0


def wait_for(condition: Callable[[], bool]) -> None:
    """Until `condition()` holds (polled; GATE_GUARD is only a hang guard)."""
    deadline = time.monotonic() + GATE_GUARD
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


@pytest.fixture
def gate(fake_openai: FakeOpenAI) -> Iterator[threading.Event]:
    """While unset, the fake model does not start answering (it still records the request)."""
    opened = threading.Event()

    def held_echo(messages: list[dict[str, Any]]) -> str:
        opened.wait(GATE_GUARD)
        return echo(messages)

    fake_openai.set_behavior(reply=held_echo)
    yield opened
    opened.set()


def test_an_answer_reaches_its_user_through_the_real_stack(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(first_token_delay=0.3)
    reading = read_answer(bot.simulator(), "user-1", "hello")
    assert reading.problems == []
    assert reading.text == "echo: hello"
    assert reading.after == texts.NOTHING_MORE  # read once, not again
    assert len(fake_openai.chat_requests()) == 1


def test_an_answer_later_than_wechats_attempts_reaches_its_user_with_a_later_message(
    bot: Bot, fake_openai: FakeOpenAI, gate: threading.Event
) -> None:
    sim = bot.simulator()
    question = sim.text_xml("user-1", "very slow")
    first = sim.push(question)
    # the model has not begun while WeChat tried: every attempt went unanswered in time but the last,
    # which (when its reply made it) says the answer is on its way
    assert len(first.attempts) == 3
    assert [a.problem for a in first.attempts[:2]] == ["timeout", "timeout"]
    assert first.text in (texts.STILL_WORKING, None)
    # on a busy machine the bot may see attempt 3 later than WeChat sent it: let its handler finish
    # (it records its reply) before the answer can be ready, so that only a later message can take it
    wait_for(lambda: bot.runtime.pushes.reply(dedup_key(parse_message(question))) is not None)
    gate.set()
    reading = read_answer(sim, "user-1", "very slow", asked=first)
    assert reading.problems == []
    assert reading.late  # headed with the question it answers
    assert reading.text == "echo: very slow"
    assert reading.after == texts.NOTHING_MORE
    assert len(fake_openai.chat_requests()) == 1  # three attempts and the fetches: one LLM call


def test_late_minutes_are_headed_as_minutes_not_with_the_transcript(bot: Bot, gate: threading.Event) -> None:
    """The heading quotes what the answer page shows (bot/replies.py question_of), not a transcript line."""
    sim = bot.simulator()
    assert sim.send_text("user-1", "/minutes").text == texts.MINUTES_STARTED
    assert sim.send_text("user-1", "讨论了第三季度预算").text == texts.MINUTES_PIECE.format(n=1)
    end = sim.text_xml("user-1", "/minutes end")
    first = sim.push(end)
    assert first.text in (texts.STILL_WORKING, None)
    wait_for(lambda: bot.runtime.pushes.reply(dedup_key(parse_message(end))) is not None)
    gate.set()
    reading = read_answer(sim, "user-1", "/minutes end", asked=first)
    assert reading.problems == []
    assert reading.pages[0].startswith(texts.LATE_ANSWER_PREFIX.format(question=texts.PAGE_MINUTES_QUESTION))
    assert "讨论了第三季度预算" in reading.text  # the minutes (the fake model echoes its prompt)
