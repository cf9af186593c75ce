"""Long and failed answers end to end, through the OpenAI SDK against the loopback fake.

The decisions (page sizes, the page limit, the first page going out while the model still writes,
each failure's sentence, the history) are scripted in fake time in tests/unit/test_delivery_script.py.
These tests keep what only the real stack shows — the SDK's stream, its errors and a cut connection —
and read the answer on whichever attempt or message it comes, so a busy machine cannot fail them.
"""

from __future__ import annotations

from bot import texts
from bot.replies import utf8_len
from testing.fakes.openai_server import FakeOpenAI
from testing.reading import read_answer
from tests.conftest import Bot

LONG = "".join(f"第{i}段：这是一个很长的回答，用来测试分页。\n" for i in range(300))


def test_a_long_streamed_answer_is_read_page_by_page_without_loss(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply=LONG, chunk_size=50)
    reading = read_answer(bot.simulator(), "user-1", "tell me a lot")
    assert reading.problems == []
    assert len(reading.pages) >= 5
    assert all(utf8_len(page) <= 2048 for page in reading.pages)
    assert not [d.violations for d in reading.deliveries if d.violations]
    assert reading.text.replace("\n", "") == LONG.replace("\n", "")
    assert reading.after == texts.NOTHING_MORE


def test_an_llm_failure_is_one_plain_sentence_and_the_history_stays_clean(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(fail_status=500)
    reading = read_answer(bot.simulator(), "user-1", "will fail")
    assert reading.problems == []
    assert reading.text == texts.LLM_FAILED
    assert reading.after == texts.NOTHING_MORE
    assert bot.runtime.history.messages("user-1") == []


def test_a_stream_cut_midway_keeps_what_was_written_and_says_so(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="部分回答" * 20, chunk_size=8, fail_after_chunks=3)
    reading = read_answer(bot.simulator(), "user-1", "cut")
    assert reading.problems == []
    # the SDK may report the cut before all the text sent (two chunks of 8 characters) arrived:
    # whatever arrived is kept, and nothing else; after some text, the note says it is incomplete
    if reading.text == texts.LLM_FAILED:
        written = ""
    else:
        assert reading.text.endswith("\n\n" + texts.LLM_CUT_SHORT), reading.text
        written = reading.text.removesuffix("\n\n" + texts.LLM_CUT_SHORT)
    assert ("部分回答" * 4).startswith(written)
    assert len(reading.pages) == 1  # the note ends the page of what was written, or is the page
