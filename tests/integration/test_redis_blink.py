"""Redis unreachable for a moment while an answer is written (a restart, a failover): the job is
retried and the answer written again, instead of being failed with 「AI 服务暂时出了问题」 and the pages it
could not store lost."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from bot import texts
from bot.store.answers import AnswerStore
from testing.fakes.openai_server import FakeOpenAI
from testing.reading import read_answer
from tests.conftest import Bot

LONG = "".join(f"第{i}句：一段足够长、要分成几页的回答。\n" for i in range(160))


def blink_once(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """AnswerStore.`method` fails once as if Redis were gone; the calls it saw."""
    real = getattr(AnswerStore, method)
    calls: list[str] = []

    def flaky(self: AnswerStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        if len(calls) == 1:
            raise redis.exceptions.ConnectionError("Connection refused (a restart)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AnswerStore, method, flaky)
    return calls


@pytest.mark.parametrize("method", ["add_pages", "finish"])
def test_the_answer_is_written_again_and_read_whole(
    bot: Bot, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    calls = blink_once(monkeypatch, method)
    reading = read_answer(bot.simulator(), "user-1", "长问题")
    assert reading.problems == []
    assert texts.LLM_FAILED not in reading.text and texts.LLM_CUT_SHORT not in reading.text
    assert reading.text.replace("\n", "") == LONG.replace("\n", "")  # every page, once
    assert len(calls) >= 2 and len(fake_openai.chat_requests()) == 2  # the failed run, and the retry
    assert bot.runtime.metrics.counter("job_failures") == {}


def test_a_rewritten_answer_that_fails_does_not_repeat_the_page_already_read(
    bot: Bot, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run's end is lost to Redis after page 1 went out; the run written again breaks off
    while it is still repeating page 1: the user reads page 1 once, then the note that it broke off."""
    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    real = AnswerStore.finish
    runs: list[str] = []

    def first_end_lost(self: AnswerStore, *args: Any, **kwargs: Any) -> Any:
        runs.append("finish")
        if len(runs) == 1:
            fake_openai.set_behavior(fail_after_chunks=3)  # the next run: 400 characters, then cut
            raise redis.exceptions.ConnectionError("Connection refused (a restart)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AnswerStore, "finish", first_end_lost)
    reading = read_answer(bot.simulator(), "user-1", "长问题")
    assert reading.problems == []
    assert len(fake_openai.chat_requests()) == 2 and len(runs) == 2
    assert reading.text.endswith(texts.LLM_CUT_SHORT)
    read = reading.text.removesuffix(texts.LLM_CUT_SHORT).replace("\n", "")
    assert read and LONG.replace("\n", "").startswith(read)  # page 1 once, nothing of it again
