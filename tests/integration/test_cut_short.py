"""An answer that stopped before its end (the model's token limit, a stream cut without its last
event) keeps what was written and tells the user it is incomplete, instead of passing for whole."""

from __future__ import annotations

import logging
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


def test_a_cut_answer_stays_in_the_history_so_that_it_can_be_continued(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    """The note says 可以请我接着写: the model then sees what it wrote before it was cut."""
    fake_openai.set_behavior(reply="第一段写到一半", finish_reason="length")
    sim = bot.simulator()
    sim.send_text("user-1", "写一篇长文")
    fake_openai.set_behavior(reply="第二段", finish_reason="stop")
    assert sim.send_text("user-1", "接着写").text == "第二段"
    messages = fake_openai.chat_requests()[-1]["messages"]
    assert messages[-3:] == [
        {"role": "user", "content": "写一篇长文"},
        {"role": "assistant", "content": "第一段写到一半"},
        {"role": "user", "content": "接着写"},
    ]


def test_thinking_that_uses_the_whole_limit_is_told_as_such(
    bot: Bot, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A reasoning model that reached the token limit before a word of its answer: not 「回答太长，在这里被
    截断了」 (nothing was written), and the log names the setting to raise."""
    fake_openai.set_behavior(reasoning="嗯，让我想想……" * 20, reply=lambda _: "", finish_reason="length")
    with caplog.at_level(logging.WARNING, logger="bot.answering.generation"):
        assert bot.simulator().send_text("user-1", "难题").text == texts.LLM_THOUGHT_TOO_LONG
    assert any("LLM_MAX_TOKENS (1024) reached before any text" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("behavior", "note"),
    [
        ({"finish_reason": "content_filter"}, texts.LLM_CUT_BY_FILTER),
        ({"finish_reason": "insufficient_system_resource"}, texts.LLM_CUT_SHORT),
        ({"fail_after_chunks": 3, "chunk_size": 2}, texts.LLM_CUT_SHORT),  # the connection dropped midway
    ],
)
def test_an_answer_stopped_midway_says_it_is_incomplete(
    bot: Bot, fake_openai: FakeOpenAI, behavior: dict[str, object], note: str
) -> None:
    """Not 「没能回答这个问题」 under the text it did write."""
    fake_openai.set_behavior(reply="第一步：先烧水。第二步：", **behavior)
    text = bot.simulator().send_text("user-1", "怎么泡茶").text
    assert text is not None and text.startswith("第一步") and text.endswith(f"\n\n{note}")


def test_an_answer_cut_at_the_token_limit_is_logged_as_information_naming_the_setting(
    bot: Bot, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """With a small LLM_MAX_TOKENS (make run's first-run model: 64) every long answer is cut: the follower
    has the text and a note, and the log says which limit cut it, at INFO — not a WARNING each time. A
    stream cut without its end stays a WARNING."""
    caplog.set_level(logging.INFO, logger="bot.answering")
    fake_openai.set_behavior(reply="前半部分的回答", finish_reason="length")
    assert bot.simulator().send_text("user-1", "写一篇长文").text is not None
    wait_for(lambda: any("failed" in r.getMessage() for r in caplog.records), what="the answer's log line")
    cut = [r for r in caplog.records if "failed" in r.getMessage()]
    assert [r.levelno for r in cut] == [logging.INFO]
    assert "LLM_MAX_TOKENS" in cut[0].getMessage()

    caplog.clear()
    fake_openai.set_behavior(reply="又一个回答", finish_reason="stop", end_without_done=True)
    assert bot.simulator().send_text("user-2", "写一篇长文").text is not None
    wait_for(lambda: any("failed" in r.getMessage() for r in caplog.records), what="the answer's log line")
    assert [r.levelno for r in caplog.records if "failed" in r.getMessage()] == [logging.WARNING]
