"""An answer that stopped before its end (the model's token limit, a stream cut without its last
event) keeps what was written and tells the user it is incomplete, instead of passing for whole."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bot import texts
from bot.answering.generation import AnswerJob
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import Bot


@pytest.mark.parametrize(
    ("behavior", "note"),
    [
        ({"finish_reason": "length"}, texts.LLM_CUT_AT_LIMIT),
        ({"end_without_done": True}, texts.LLM_CUT_SHORT),
    ],
)
def test_a_cut_answer_is_shown_with_its_note(
    bot: Bot, fake_openai: FakeOpenAI, behavior: dict[str, object], note: str
) -> None:
    """The note ends the text's last page: no 继续 that would bring only the note."""
    fake_openai.set_behavior(reply="前半部分的回答", **behavior)
    sim = bot.simulator()
    assert sim.send_text("user-1", "写一篇长文").text == f"前半部分的回答\n\n{note}"
    assert sim.send_text("user-1", "继续").text == texts.NOTHING_MORE
    assert bot.runtime.metrics.counter("job_failures") == {'{"reason": "cut_short"}': 1}


def test_a_note_that_does_not_fit_the_last_page_has_a_page_of_its_own(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    budget = AnswerJob(bot.runtime).budget
    reply = "长" * (budget // 3)  # one full page: 3 bytes a character
    fake_openai.set_behavior(reply=reply, finish_reason="length")
    sim = bot.simulator()
    first = sim.send_text("user-1", "写一篇长文").text
    assert first is not None and first.startswith(reply) and texts.MORE_HINT in first
    assert sim.send_text("user-1", "继续").text == texts.LLM_CUT_AT_LIMIT
    assert sim.send_text("user-1", "继续").text == texts.NOTHING_MORE


def test_a_whole_answer_has_no_note(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="完整的回答")
    assert bot.simulator().send_text("user-1", "hi").text == "完整的回答"


def test_in_active_mode_a_cut_answer_is_one_message_with_its_note(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(wechat_reply_mode="active")
    fake_openai.set_behavior(reply="前半部分的回答", finish_reason="length")
    bot.simulator().send_text("user-1", "写一篇长文")
    expected = [f"前半部分的回答\n\n{texts.LLM_CUT_AT_LIMIT}"]
    wait_for(lambda: fake_wechat.sent_texts("user-1") == expected)
    time.sleep(0.3)  # the run sends its pages as it finishes: a page for the note would follow at once
    assert fake_wechat.sent_texts("user-1") == expected
