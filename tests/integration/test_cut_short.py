"""An answer that stopped before its end (the model's token limit, a stream cut without its last
event) keeps what was written and tells the user it is incomplete, instead of passing for whole."""

from __future__ import annotations

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import Bot


@pytest.mark.parametrize(
    ("behavior", "note"),
    [
        ({"finish_reason": "length"}, texts.LLM_CUT_AT_LIMIT),
        ({"end_without_done": True}, texts.LLM_CUT_SHORT),
    ],
)
def test_a_cut_answer_is_shown_with_a_note(
    bot: Bot, fake_openai: FakeOpenAI, behavior: dict[str, object], note: str
) -> None:
    fake_openai.set_behavior(reply="前半部分的回答", **behavior)
    sim = bot.simulator()
    first = sim.send_text("user-1", "写一篇长文")
    assert (
        first.text is not None and first.text.startswith("前半部分的回答") and texts.MORE_HINT in first.text
    )
    assert sim.send_text("user-1", "继续").text == note
    assert bot.runtime.metrics.counter("job_failures") == {'{"reason": "cut_short"}': 1}


def test_a_whole_answer_has_no_note(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="完整的回答")
    assert bot.simulator().send_text("user-1", "hi").text == "完整的回答"
