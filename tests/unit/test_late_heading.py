"""The late-answer heading quotes what the answer answers as its answer page names it: a meeting's
minutes are 「会议纪要」 (not the first line of the transcript), a voice message that failed before its
transcript 「［语音］」 (not 「」)."""

from __future__ import annotations

import dataclasses

import pytest

from bot import texts
from bot.delivery.passive import compose
from bot.replies import preview, question_of
from bot.store.answers import Answer, Target

ANSWER = Answer(
    id="a1",
    openid="user-1",
    question="今天天气怎么样",
    status="done",
    error="",
    owner="push-1",
    reserved_until=0.0,
    delivery="passive",
    page_count=1,
    restarts=0,
    kind="text",
    media_id="",
    created=0.0,
)


@pytest.mark.parametrize(
    ("kind", "question", "quoted"),
    [
        ("text", "今天天气怎么样", "今天天气怎么样"),
        ("voice", "帮我写首诗", "帮我写首诗"),  # transcribed: its transcript is the question
        ("voice", "", texts.PAGE_VOICE_QUESTION),  # failed before its transcript
        ("minutes", "1. 讨论了第三季度预算\n2. 张三负责测试", texts.PAGE_MINUTES_QUESTION),
    ],
)
def test_a_late_answer_is_headed_with_the_question_its_page_shows(
    kind: str, question: str, quoted: str
) -> None:
    answer = dataclasses.replace(ANSWER, kind=kind, question=question)
    assert question_of(answer) == quoted  # what the answer page shows (bot/pages/views.py)
    page = compose(Target(answer, 0, from_owed=True), "回答", late=True)
    assert page == texts.LATE_ANSWER_PREFIX.format(question=preview(quoted)) + "回答"
