"""Tools through the whole stack: the real `openai` SDK against the loopback fake that streams
`tool_calls` (one call, parallel calls, malformed arguments, an unknown tool, a model that never stops
calling), the results going back to the model, the answer in chat, the metric and /stats, and the
history a follow-up question is asked with."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from bot import texts
from bot.answering.generation import AnswerJob
from bot.knowledge.documents import Block, Document
from bot.llm.openai_backend import OpenAIBackend
from bot.ops.redis_server import RedisServer
from bot.runtime import Runtime
from bot.tools import MAX_CALLS, MAX_ROUNDS, TOOL_BUDGET_SECONDS
from handlers.commands import stats_command
from testing.fakes.openai_server import FakeCall, FakeOpenAI
from testing.pages import PUBLIC_BASE
from testing.patience import wait_for
from testing.reading import read_answer
from testing.scene import scene_settings
from tests.conftest import Bot

Messages = list[dict[str, Any]]


def tool_results(messages: Messages) -> list[str]:
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]


def calls_once(*calls: FakeCall) -> Any:
    """A model that makes these calls, then answers with what the tools said."""

    def script(messages: Messages) -> list[FakeCall]:
        return [] if tool_results(messages) else list(calls)

    return script


def answer_with_results(messages: Messages) -> str:
    return "结果：" + " | ".join(tool_results(messages))


def counted(bot: Bot) -> dict[tuple[str, str], int]:
    found = bot.runtime.metrics.counter("tool_calls")
    return {(json.loads(k)["function"], json.loads(k)["outcome"]): v for k, v in found.items()}


def test_one_call_is_run_and_its_result_answers(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(
        tool_script=calls_once(("calculator", '{"expression": "10000*(1+4%)**3"}')), reply=answer_with_results
    )
    reading = read_answer(bot.simulator(), "user-1", "一万元存三年，年利率4%，复利多少？")
    assert reading.text == "结果：10000*(1+4%)**3 = 11248.64"
    [first, second] = fake_openai.chat_requests()
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "calculator",
        "solve_equations",
        "normal_distribution",
        "dates",
    }
    assert first["tool_choice"] == "auto"
    [call] = second["messages"][-2]["tool_calls"]
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "10000*(1+4%)**3"}'}
    assert second["messages"][-1]["tool_call_id"] == call["id"]
    assert counted(bot) == {("calculator", "ok"): 1}


def test_parallel_calls_are_all_run_in_order(bot: Bot, fake_openai: FakeOpenAI) -> None:
    calls = (
        ("solve_equations", '{"equations": ["x + y = 35", "2*x + 4*y = 94"]}'),
        ("normal_distribution", '{"question": "below", "x": 0}'),
        ("dates", '{"question": "weekday", "date": "2026-12-01"}'),
    )
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "鸡兔同笼，头35，脚94")
    assert reading.text == (
        "结果：x = 23, y = 12 | N(mean=0, sd=1): P(X ≤ 0) = 0.5 (50%) | 2026-12-01 (Tuesday)"
    )
    assert counted(bot) == {
        ("solve_equations", "ok"): 1,
        ("normal_distribution", "ok"): 1,
        ("dates", "ok"): 1,
    }


def test_parallel_calls_sent_without_an_index_are_each_run(bot: Bot, fake_openai: FakeOpenAI) -> None:
    """Gemini's OpenAI-compatible endpoint streams each call whole, without `index`: two calls, not one
    made of the first one's name and both argument texts."""
    calls = (
        ("calculator", '{"expression": "6*7"}'),
        ("dates", '{"question": "weekday", "date": "2026-12-01"}'),
    )
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results, tool_calls_whole=True)
    reading = read_answer(bot.simulator(), "user-1", "6*7，以及那天星期几")
    assert reading.text == "结果：6*7 = 42 | 2026-12-01 (Tuesday)"
    assert counted(bot) == {("calculator", "ok"): 1, ("dates", "ok"): 1}


def test_malformed_arguments_and_unknown_tools_are_told_to_the_model(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    calls = (("calculator", '{"expression": "1+'), ("web_search", '{"q": "天气"}'))
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "算一下")
    assert reading.text.startswith("结果：error: the arguments are not valid JSON | error: there is no tool")
    assert counted(bot) == {("calculator", "bad_arguments"): 1, ("unknown", "unknown"): 1}


def test_calls_beyond_the_round_limit_are_not_run(bot: Bot, fake_openai: FakeOpenAI) -> None:
    calls = [("calculator", json.dumps({"expression": f"{n}+{n}"})) for n in range(1, MAX_CALLS + 3)]
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "算一下平方")
    results = reading.text.removeprefix("结果：").split(" | ")
    assert results == [f"{n}+{n} = {n + n}" for n in range(1, MAX_CALLS + 1)] + [texts.TOOL_TOO_MANY] * 2
    assert counted(bot) == {("calculator", "ok"): MAX_CALLS, ("calculator", "error"): 2}


def test_a_hostile_expression_is_refused_not_computed(bot: Bot, fake_openai: FakeOpenAI) -> None:
    calls = (
        ("calculator", '{"expression": "9**9**9**9"}'),
        ("calculator", '{"expression": "__import__(\'os\')"}'),
    )
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "算一下")
    assert "refused" in reading.text and "not defined" in reading.text
    assert counted(bot) == {("calculator", "error"): 2}


def test_a_model_that_never_stops_calling_answers_in_words_after_three_rounds(
    bot: Bot, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.set_behavior(
        tool_script=lambda messages: [("calculator", '{"expression": "1+1"}')],
        reply=lambda messages: f"算了 {len(tool_results(messages))} 次，答案是 2。",
    )
    with caplog.at_level(logging.INFO, logger="bot.answering.generation"):
        reading = read_answer(bot.simulator(), "user-1", "1+1 等于几？")
    assert reading.text == f"算了 {MAX_ROUNDS} 次，答案是 2。"
    requests = fake_openai.chat_requests()
    assert [request["tool_choice"] for request in requests] == ["auto"] * MAX_ROUNDS + ["none"]
    assert counted(bot) == {("calculator", "ok"): MAX_ROUNDS}
    assert any(
        "tools calculator(ok), calculator(ok), calculator(ok)" in r.getMessage() for r in caplog.records
    )


def test_a_follow_up_question_sees_the_earlier_result(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(
        tool_script=calls_once(("calculator", '{"expression": "10000*(1+4%)**3"}')), reply=answer_with_results
    )
    read_answer(bot.simulator(), "user-1", "一万元存三年，年利率4%，复利多少？")
    [question, answer] = wait_for(lambda: bot.runtime.history.messages("user-1"))
    assert question == {"role": "user", "content": "一万元存三年，年利率4%，复利多少？"}
    assert answer["role"] == "assistant" and set(answer) == {"role", "content"}  # a plain turn
    assert "10000*(1+4%)**3 = 11248.64" in answer["content"]
    assert answer["content"].endswith("结果：10000*(1+4%)**3 = 11248.64")

    fake_openai.set_behavior(tool_script=None, reply="好的")
    read_answer(bot.simulator(), "user-1", "那如果利率是5%呢？")
    follow_up = fake_openai.chat_requests()[-1]["messages"]
    earlier = [m["content"] for m in follow_up if m["role"] == "assistant"]
    assert len(earlier) == 1 and "11248.64" in earlier[0]
    assert follow_up[-1] == {"role": "user", "content": "那如果利率是5%呢？"}


def test_tools_setting_limits_what_is_offered(make_bot: Any, fake_openai: FakeOpenAI) -> None:
    bot = make_bot(tools="dates")
    read_answer(bot.simulator(), "user-1", "你好")
    [request] = fake_openai.chat_requests()
    assert [tool["function"]["name"] for tool in request["tools"]] == ["dates"]


def test_no_tools_offers_none(make_bot: Any, fake_openai: FakeOpenAI) -> None:
    bot = make_bot(tools="")
    read_answer(bot.simulator(), "user-1", "你好")
    [request] = fake_openai.chat_requests()
    assert "tools" not in request


def test_stats_shows_tool_calls(bot: Bot, fake_openai: FakeOpenAI) -> None:
    bot.runtime.metrics.inc("tool_calls", function="calculator", outcome="ok")
    bot.runtime.metrics.inc("tool_calls", function="calculator", outcome="ok")
    bot.runtime.metrics.inc("tool_calls", function="dates", outcome="error")
    reply = stats_command(SimpleNamespace(runtime=bot.runtime), "")  # type: ignore[arg-type]
    assert isinstance(reply, str) and reply.endswith("今日工具调用：日期/报错 1，计算器/成功 2")


def test_a_stray_call_without_tools_offered_is_not_an_answer(fake_openai: FakeOpenAI, make_bot: Any) -> None:
    bot = make_bot()
    backend = bot.runtime.backend
    assert isinstance(backend, OpenAIBackend)
    fake_openai.set_behavior(tool_script=lambda messages: [("dates", "{}")], reply="纯文字")
    assert "".join(str(piece) for piece in backend.stream([{"role": "user", "content": "hi"}])) == "纯文字"
    assert "tools" not in fake_openai.chat_requests()[-1]


# --- the knowledge-base search tool -------------------------------------------------------------
ROTATION = Document(
    "行业轮动月报",
    [Block("核心观点", heading=True), Block("十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业。")],
    source="wechat",
    key="x:rotation",
    url="https://mp.weixin.qq.com/s/rotation",
)
BONDS = Document(
    "可转债策略", [Block("可转债双低策略：价格与溢价率之和低于阈值时买入。")], "file", "bonds.md"
)
SEARCH = ("search_knowledge", '{"query": "行业轮动 超配"}')


def offered(request: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in request.get("tools", [])]


def test_the_model_searches_the_knowledge_base_and_answers_from_the_passage(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    bot.runtime.knowledge.add(ROTATION)
    fake_openai.set_behavior(tool_script=calls_once(SEARCH), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "我该买点什么？")  # nothing in the KB: not grounded
    [first, second] = fake_openai.chat_requests()
    assert offered(first)[-1] == "search_knowledge"
    assert first["messages"][-1]["content"] == "我该买点什么？"  # no passage in the prompt: the tool finds it
    [result] = tool_results(second["messages"])
    assert result.startswith(
        "1 passage(s) of the knowledge base for '行业轮动 超配':\n[1] 行业轮动月报 › 核心观点"
    )
    assert (
        "推荐超配银行、煤炭和电力设备" in result and "source: https://mp.weixin.qq.com/s/rotation" in result
    )
    # the passage's document is the answer's source, though no passage grounded the question
    assert (
        reading.text == "结果：" + result + "\n\n来源：\n1. 行业轮动月报 https://mp.weixin.qq.com/s/rotation"
    )
    assert counted(bot) == {("search_knowledge", "ok"): 1}
    [_, answer] = wait_for(lambda: bot.runtime.history.messages("user-1"))
    assert answer["content"].startswith(
        '［我用工具算过：search_knowledge({"query": "行业轮动 超配"}) → 1 passage'
    )
    reply = stats_command(SimpleNamespace(runtime=bot.runtime), "")  # type: ignore[arg-type]
    assert isinstance(reply, str) and reply.endswith("今日工具调用：知识库检索/成功 1")


def test_the_sources_list_the_groundings_document_then_the_one_the_search_found(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    """The question is grounded in one document (B), the model searches and answers from another (A):
    both are the answer's sources, the grounding's first; A was left out before."""
    bot.runtime.knowledge.add(ROTATION)
    bot.runtime.knowledge.add(BONDS)
    fake_openai.set_behavior(tool_script=calls_once(SEARCH), reply="超配银行、煤炭和电力设备。")
    reading = read_answer(bot.simulator(), "user-1", "可转债双低策略是什么？")
    [first, _] = fake_openai.chat_requests()
    assert "可转债双低策略" in first["messages"][-1]["content"]  # grounded in B
    assert reading.text == (
        "超配银行、煤炭和电力设备。\n\n来源：\n1. 可转债策略\n2. 行业轮动月报 https://mp.weixin.qq.com/s/rotation"
    )


def test_the_answer_page_lists_the_documents_the_search_found_too(
    make_bot: Any, fake_openai: FakeOpenAI
) -> None:
    """The page listed the grounding's sources only, while the chat's footer had the search's too."""
    bot = make_bot(public_base_url=PUBLIC_BASE)
    bot.runtime.knowledge.add(ROTATION)
    bot.runtime.knowledge.add(BONDS)
    fake_openai.set_behavior(tool_script=calls_once(SEARCH), reply="超配银行、煤炭和电力设备。")
    read_answer(bot.simulator(), "user-1", "可转债双低策略是什么？")
    target = bot.runtime.answers.current_target("user-1")
    assert target is not None
    live = bot.runtime.pages.live(target.answer.id)
    assert [source.title for source in live.sources] == ["可转债策略", "行业轮动月报"]


def test_a_search_that_finds_nothing_says_so(bot: Bot, fake_openai: FakeOpenAI) -> None:
    bot.runtime.knowledge.add(ROTATION)
    calls = (
        ("search_knowledge", '{"query": "火星殖民计划", "top_k": 99}'),
        ("search_knowledge", '{"top_k": 2}'),
    )
    fake_openai.set_behavior(tool_script=calls_once(*calls), reply=answer_with_results)
    reading = read_answer(bot.simulator(), "user-1", "你们写过火星吗？")
    assert reading.text == (
        "结果：no passage of the knowledge base is relevant to '火星殖民计划'"
        " | error: missing argument query (what to look up, a few words)"
    )
    assert counted(bot) == {("search_knowledge", "ok"): 1, ("search_knowledge", "error"): 1}


def test_the_search_is_offered_only_while_the_knowledge_base_has_documents(
    bot: Bot, fake_openai: FakeOpenAI
) -> None:
    read_answer(bot.simulator(), "user-1", "你好")
    doc_id = bot.runtime.knowledge.add(ROTATION).record.id
    read_answer(bot.simulator(), "user-1", "你好")
    bot.runtime.knowledge.remove(doc_id)
    read_answer(bot.simulator(), "user-1", "你好")
    assert [offered(request)[-1] for request in fake_openai.chat_requests()] == [
        "dates",
        "search_knowledge",
        "dates",
    ]


def test_a_search_not_in_tools_is_not_offered_with_documents(make_bot: Any, fake_openai: FakeOpenAI) -> None:
    bot = make_bot(tools="calculator")
    bot.runtime.knowledge.add(ROTATION)
    read_answer(bot.simulator(), "user-1", "你好")
    [request] = fake_openai.chat_requests()
    assert offered(request) == ["calculator"]


def test_no_tool_round_starts_after_the_answers_time_budget(
    fake_openai: FakeOpenAI, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The job's clock says TOOL_BUDGET_SECONDS have passed once the first round is over (each request
    to the model "takes" 100 s): the next request must answer in words (tool_choice none)."""
    fake_openai.set_behavior(
        tool_script=lambda messages: [("calculator", '{"expression": "1+1"}')],
        reply=lambda messages: f"算了 {len(tool_results(messages))} 次，答案是 2。",
    )
    settings = scene_settings(redis_server.url, openai_base_url=fake_openai.base_url)
    runtime = Runtime(settings, redis.Redis.from_url(redis_server.url, decode_responses=True))
    try:
        answer_id = runtime.answers.create(
            "user-1", "1+1 等于几？", owner="push", reserved_for=0, delivery="passive"
        )
        job = AnswerJob(runtime)
        job.clock = lambda: 100.0 * len(fake_openai.chat_requests())
        assert job.run(answer_id) == "done"
        assert [request["tool_choice"] for request in fake_openai.chat_requests()] == ["auto", "none"]
        answer = runtime.answers.get(answer_id)
        assert answer is not None and runtime.answers.page(answer, 0) == "算了 1 次，答案是 2。"
        assert 100.0 * len(fake_openai.chat_requests()) > TOOL_BUDGET_SECONDS
    finally:
        runtime.close()


def test_words_before_a_call_are_sent_back_with_it_and_kept_apart(bot: Bot, fake_openai: FakeOpenAI) -> None:
    """A model that says something before it calls a tool: the next request carries those words (else the
    model may say them again), and the follower reads them as a paragraph before the answer."""
    fake_openai.set_behavior(
        tool_script=calls_once(("calculator", '{"expression": "1+1"}')),
        tool_preamble="好的，我先用计算器算一下。",
        reply=answer_with_results,
    )
    reading = read_answer(bot.simulator(), "user-1", "1+1 等于几？")
    assert reading.text == "好的，我先用计算器算一下。\n\n结果：1+1 = 2"
    [_, second] = fake_openai.chat_requests()
    assert second["messages"][-2]["content"] == "好的，我先用计算器算一下。"
    assert second["messages"][-2]["tool_calls"]
