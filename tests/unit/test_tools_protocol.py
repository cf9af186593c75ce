"""The tool protocol's pieces: streamed tool_calls put back together, the messages of a round, the
history's note, the TOOLS setting, and tools off for FastChat (one log line)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from bot.answering.kinds import offered_tools
from bot.config import ConfigError, load_settings
from bot.llm import ToolCall, ToolCallingBackend, ToolCalls
from bot.llm.fastchat_backend import FastChatBackend
from bot.llm.openai_backend import OpenAIBackend, ToolCallCollector
from bot.store.history import History
from bot.tools import TOOL_NAMES, ToolResult, tool_messages, tool_note


def delta(index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None) -> Any:
    """One streamed `tool_calls` delta, as the chunk's JSON has it."""
    return {"index": index, "id": id, "function": {"name": name, "arguments": arguments}}


def test_parallel_calls_streamed_in_pieces_are_put_back_together() -> None:
    collector = ToolCallCollector()
    collector.feed([delta(0, id="a", name="calculator", arguments="")])
    collector.feed([delta(1, id="b", name="dates", arguments='{"qu')])
    collector.feed([delta(0, arguments='{"expression"'), delta(1, arguments='estion": "today"}')])
    collector.feed(None)
    collector.feed([delta(0, arguments=': "1+1"}')])
    assert collector.finish() == ToolCalls(
        (
            ToolCall("a", "calculator", '{"expression": "1+1"}'),
            ToolCall("b", "dates", '{"question": "today"}'),
        )
    )


def unindexed(*, id: str | None = None, name: str | None = None, arguments: str | None = None) -> Any:
    """A `tool_calls` delta from a server that sends no `index` (Gemini's OpenAI-compatible endpoint)."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_parallel_calls_without_an_index_are_told_apart_by_their_id_or_name() -> None:
    collector = ToolCallCollector()  # Gemini: each call whole, one after another
    collector.feed([unindexed(id="a", name="calculator", arguments='{"expression": "1+1"}')])
    collector.feed([unindexed(id="b", name="calculator", arguments='{"expression": "2+2"}')])
    collector.feed([unindexed(id="c", name="dates", arguments="{}")])
    assert collector.finish() == ToolCalls(
        (
            ToolCall("a", "calculator", '{"expression": "1+1"}'),
            ToolCall("b", "calculator", '{"expression": "2+2"}'),
            ToolCall("c", "dates", "{}"),
        )
    )
    collector = ToolCallCollector()  # no ids: a new function name starts the next call
    collector.feed([unindexed(name="calculator", arguments='{"expression"')])
    collector.feed([unindexed(arguments=': "1+1"}')])
    collector.feed([unindexed(name="dates", arguments="{}")])
    assert collector.finish() == ToolCalls(
        (ToolCall("call_0", "calculator", '{"expression": "1+1"}'), ToolCall("call_1", "dates", "{}"))
    )
    collector = ToolCallCollector()  # one call in pieces, its id and name sent again with each
    collector.feed([unindexed(id="a", name="dates", arguments='{"que')])
    collector.feed([unindexed(id="a", name="dates", arguments='stion": "today"}')])
    assert collector.finish() == ToolCalls((ToolCall("a", "dates", '{"question": "today"}'),))


def test_a_round_in_openai_format_and_the_note_for_the_history() -> None:
    calls = ToolCalls((ToolCall("a", "calculator", '{"expression": "1+1"}'), ToolCall("b", "x", "{}")))
    results = [
        ToolResult("calculator", '{"expression": "1+1"}', "1+1 = 2", "ok"),
        ToolResult("x", "{}", "error: there is no tool 'x'", "unknown"),
    ]
    assert tool_messages("", calls, results) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
                },
                {"id": "b", "type": "function", "function": {"name": "x", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "1+1 = 2"},
        {"role": "tool", "tool_call_id": "b", "content": "error: there is no tool 'x'"},
    ]
    assert tool_note(results) == '［我用工具算过：calculator({"expression": "1+1"}) → 1+1 = 2］\n'
    assert tool_note(results[1:]) == ""
    long = ToolResult("calculator", "{" + "1" * 5000 + "}", "2" * 5000, "ok")
    assert len(tool_note([long] * 3)) < 1100  # compact, however long the calls


def test_the_history_still_trims_answers_with_a_tool_note(redis_client: redis.Redis) -> None:
    history = History(redis_client, max_turns=10, max_chars=600, ttl=60)
    note = tool_note([ToolResult("calculator", '{"expression": "1+1"}', "1+1 = 2", "ok")])
    for index in range(5):
        history.add_turn("user-1", f"问题{index}", note + "答" * 150, float(index))
    prompt = history.prompt("user-1", "系统", "新问题")
    assert 2 <= len(prompt) - 2 < 10 and sum(len(m["content"]) for m in prompt) <= 600
    assert prompt[-2]["content"].startswith("［我用工具算过") and prompt[-1]["content"] == "新问题"


def test_the_tools_setting() -> None:
    base = {"wechat_token": "t", "redis_url": "redis://127.0.0.1:6379/0", "openai_api_key": "k"}
    assert load_settings(**base).tools == list(TOOL_NAMES)
    assert load_settings(**base, tools="dates, calculator").tools == ["dates", "calculator"]
    assert load_settings(**base, tools="").tools == []
    assert load_settings(**base, tools=" None ").tools == []
    with pytest.raises(ConfigError, match=r"TOOLS.*unknown tools"):
        load_settings(**base, tools="calculator,shell")


def test_tools_none_in_the_environment_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty TOOLS= line counts as unset (every setting does): all tools; `none` is the off switch."""
    base = {"wechat_token": "t", "redis_url": "redis://127.0.0.1:6379/0", "openai_api_key": "k"}
    monkeypatch.setenv("TOOLS", "")
    assert load_settings(**base).tools == list(TOOL_NAMES)
    monkeypatch.setenv("TOOLS", "none")
    assert load_settings(**base).tools == []


def test_fastchat_has_no_tool_protocol_and_tools_are_off_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert issubclass(OpenAIBackend, ToolCallingBackend)
    assert not issubclass(FastChatBackend, ToolCallingBackend)
    settings = SimpleNamespace(tools=list(TOOL_NAMES), zone=ZoneInfo("Asia/Shanghai"), llm_backend="fastchat")
    runtime: Any = SimpleNamespace(settings=settings, knowledge=None)  # no backend: none is built to decide
    with caplog.at_level(logging.INFO, logger="bot.answering.kinds"):
        assert offered_tools(runtime) is None
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "tools off: the fastchat backend has no function calling (TOOLS ignored)"
