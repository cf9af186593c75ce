"""The tools benchmark's answer key, computed by our own tools (so that it cannot be wrong), and the
reading of a model's final number."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from bench.qwen_tools_server import parse_calls
from bench.tools_bench import Question, extract_number, load_questions, read_result, tool_found, tool_value
from bot.tools import TOOL_NAMES, ToolBox

QUESTIONS = load_questions()
BOX = ToolBox.enabled(list(TOOL_NAMES), ZoneInfo("Asia/Shanghai"))


def test_there_are_at_least_30_questions_of_every_kind() -> None:
    assert len(QUESTIONS) >= 30 and len({q.id for q in QUESTIONS}) == len(QUESTIONS)
    kinds = Counter(q.id.split("-")[0] for q in QUESTIONS)
    assert set(kinds) == {"compound", "growth", "loan", "equations", "percent", "normal", "dates", "pv"}
    assert {q.check["tool"] for q in QUESTIONS} == set(TOOL_NAMES) - {"search_knowledge"}


@pytest.mark.parametrize("question", QUESTIONS, ids=[q.id for q in QUESTIONS])
def test_our_tools_compute_the_expected_answer(question: Question) -> None:
    computed = tool_value(BOX, question.check)
    assert question.correct(computed), f"{question.id}: the key says {question.answer}, the tool {computed}"
    assert not question.correct(computed * 1.01 + 1)  # the tolerance is tight enough to mean something


def test_reading_a_tools_result() -> None:
    assert read_result("10000*(1+4%)**3 = 11248.64") == 11248.64
    assert read_result("N(mean=0, sd=1): quantile at p=0.05 is -1.64485362695") == -1.64485362695
    assert read_result("N(mean=0, sd=1): P(X ≤ 1.96) = 0.9750021049 (97.5%)") == 0.9750021049
    assert read_result("from 2024-01-01 (Monday) to 2024-12-31 (Tuesday): 365 days") == 365
    assert read_result("r = -21/10 ≈ -2.100000000\nr = 1/10 ≈ 0.1000000000", "r") == 0.1
    assert read_result("x = 23, y = 12", "y") == 12
    with pytest.raises(ValueError):
        read_result("error: division by zero")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("本息合计为 11,248.64 元。\n答案：11248.64", 11248.64),
        ("答案：约 5307.27 元，共 360 期", 5307.27),
        ("每月还款约为6084.39元。", 6084.39),
        ("同比增长率为10%。", 10.0),
        ("下降了，环比增长率是 -10%", -10.0),
        ("大约是16.29万元", 162900.0),
        ("结果为−1.6449", -1.6449),
        ("最终：兔子有12只", 12.0),
        ("我不知道", None),
    ],
)
def test_the_final_number_of_an_answer(text: str, number: float | None) -> None:
    assert extract_number(text) == number


def test_a_percentage_or_probability_may_be_written_either_way() -> None:
    growth = next(q for q in QUESTIONS if q.id == "growth-1")  # 10 (%)
    assert growth.correct(10.0) and growth.correct(0.1) and not growth.correct(11.0)
    money = next(q for q in QUESTIONS if q.id == "loan-1")  # 5307.27 yuan: no other scale
    assert money.correct(5307.0) and not money.correct(53.0727) and not money.correct(None)


def test_a_tool_result_in_the_history_note_counts_as_found() -> None:
    loan = next(q for q in QUESTIONS if q.id == "loan-1")
    note = '［我用工具算过：calculator({"expression": "1000000*…"}) → 1000000*… = 5307.26720623'
    assert tool_found(loan, note) and not tool_found(loan, note.replace("5307", "5207"))


def test_the_cpu_servers_reading_of_qwens_calls() -> None:
    """bench/qwen_tools_server.py: llama.cpp leaves Qwen's special <tool_call> tokens out of the text."""
    names = {"calculator", "dates"}
    one = '答案：{"name": "calculator", "arguments": {"expression": "10000*(1+4%)**3"}'  # one } short
    assert parse_calls(one, names) == (
        "答案：",
        [{"name": "calculator", "arguments": '{"expression": "10000*(1+4%)**3"}'}],
    )
    two = '{"name": "dates", "arguments": {"question": "today"}}\n{"name": "calculator", "arguments": "{}"}'
    assert [call["name"] for call in parse_calls(two, names)[1]] == ["dates", "calculator"]
    assert parse_calls('结果是 {"name": "shell", "arguments": {}} 与 {"a": 1}', names) == (
        '结果是 {"name": "shell", "arguments": {}} 与 {"a": 1}',
        [],
    )
