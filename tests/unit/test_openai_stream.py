"""The OpenAI backend reads the chat completion's event stream itself (bot/llm/openai_backend.py
`chunks_of`): the events as OpenAI-compatible servers send them, errors in the stream, and the
connection kept for the next answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import load_settings
from bot.llm import LLMError, Reasoning
from bot.llm.openai_backend import OpenAIBackend, chunks_of
from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest
from testing.fakes.openai_server import FakeOpenAI


class Lines:
    """A response whose body is these lines; records how far they were read."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.read = lines, 0
        self.encoding = "ascii"

    def iter_lines(self) -> Iterator[str]:
        for line in self.lines:
            self.read += 1
            yield line


def chunks(lines: list[str]) -> list[dict[str, Any]]:
    return list(chunks_of(Lines(lines)))  # type: ignore[arg-type]


def test_events_up_to_done_and_the_body_read_to_its_end() -> None:
    body = Lines(
        [
            ": a comment (keep-alive)",
            "event: message",
            'data: {"n": 1}',
            "",
            "",
            'data:{"n": 2}',  # no space after the colon is allowed
            "",
            "data: [DONE]",
            "",
            'data: {"n": 3}',  # after [DONE]: read, not used
            "",
        ]
    )
    assert list(chunks_of(body)) == [{"n": 1}, {"n": 2}]  # type: ignore[arg-type]
    assert body.read == len(body.lines)
    assert body.encoding == "utf-8"  # the stream's own encoding, whatever its Content-Type said


def test_an_event_on_several_data_lines_and_a_last_event_without_its_blank_line() -> None:
    assert chunks(['data: {"text":', 'data: "a"}', "", 'data: {"n": 9}']) == [{"text": "a"}, {"n": 9}]
    assert chunks(["data: [DONE]"]) == []


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('data: {"error": {"message": "overloaded", "type": "server_error"}}', "overloaded"),
        ('data: {"error": "boom"}', "boom"),
        ("data: <html>502 Bad Gateway</html>", "invalid JSON"),
        ("data: [1, 2]", "not an object"),
    ],
)
def test_an_error_or_garbage_in_the_stream_fails_the_answer(line: str, says: str) -> None:
    with pytest.raises(LLMError, match=says) as raised:
        chunks([line, ""])
    assert raised.value.kind == "failed"


def backend(fake: FakeOpenAI) -> OpenAIBackend:
    settings = load_settings(
        wechat_token="t", redis_url="redis://127.0.0.1:6379/0", openai_base_url=f"{fake.url}/v1"
    )
    return OpenAIBackend(settings)


def test_answers_share_one_connection(fake_openai: FakeOpenAI) -> None:
    llm = backend(fake_openai)
    try:
        for question in ("one", "two", "three"):
            text = "".join(str(piece) for piece in llm.stream([{"role": "user", "content": question}]))
            assert text == f"echo: {question}"
    finally:
        llm.close()
    assert len(fake_openai.chat_requests()) == 3
    assert fake_openai.connections_accepted == 1


def test_thinking_text_and_a_cut_stream(fake_openai: FakeOpenAI) -> None:
    llm = backend(fake_openai)
    try:
        fake_openai.set_behavior(reasoning="想一想", reply="答案")
        pieces = list(llm.stream([{"role": "user", "content": "q"}]))
        assert "".join(p.text for p in pieces if isinstance(p, Reasoning)) == "想一想"
        assert "".join(p for p in pieces if isinstance(p, str)) == "答案"
        fake_openai.set_behavior(reasoning="", fail_after_chunks=2)
        with pytest.raises(LLMError) as raised:
            list(llm.stream([{"role": "user", "content": "q"}]))
        assert raised.value.kind == "unavailable"
    finally:
        llm.close()


class NotOpenAIShaped(FakeServer):
    """A server that answers every request as FastAPI does for a path it does not have."""

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        handler.send_json({"detail": "Not Found"}, 404)


def test_an_error_status_names_the_model_the_url_and_the_servers_words() -> None:
    """A 404 from a wrong base URL or model name, in a body that is not OpenAI's shape: the log line
    must still tell the operator which model and which URL were asked, and what the server said."""
    with NotOpenAIShaped() as server:
        url = server.url
        settings = load_settings(
            wechat_token="t", redis_url="redis://127.0.0.1:6379/0", openai_base_url=f"{url}/v2"
        )
        llm = OpenAIBackend(settings)
        try:
            with pytest.raises(LLMError) as raised:
                list(llm.stream([{"role": "user", "content": "q"}], model="qwen-max"))
        finally:
            llm.close()
    detail = raised.value.detail
    assert raised.value.kind == "failed"
    assert "404" in detail and "'qwen-max'" in detail and f"{url}/v2/chat/completions" in detail
    assert detail.endswith('{"detail": "Not Found"}')


@pytest.mark.parametrize(
    ("reason", "cut"),
    [("stop", False), ("tool_calls", False), ("eos", False), ("eos_token", False), ("end_turn", False),
     ("length", True), ("content_filter", True), ("sensitive", True), ("insufficient_system_resource", True)],
)  # fmt: skip
def test_only_the_models_own_end_counts_as_finished(fake_openai: FakeOpenAI, reason: str, cut: bool) -> None:
    """DeepSeek ends a stream it could not finish with `insufficient_system_resource`, OpenAI one its
    moderation stopped with `content_filter` (Zhipu: `sensitive`): neither is a whole answer. Servers that
    name a normal end otherwise (Together's `eos`, TGI's `eos_token`) still give a whole one."""
    llm = backend(fake_openai)
    fake_openai.set_behavior(reply="第一步：先烧水。第二步：", finish_reason=reason)
    try:
        if not cut:
            assert "".join(str(p) for p in llm.stream([{"role": "user", "content": "q"}])).startswith(
                "第一步"
            )
            return
        with pytest.raises(LLMError) as raised:
            list(llm.stream([{"role": "user", "content": "q"}]))
    finally:
        llm.close()
    assert raised.value.kind == "cut_short"
    assert raised.value.detail == ("content_filter" if reason == "sensitive" else reason)


def r1_backend(fake: FakeOpenAI) -> OpenAIBackend:
    """DeepSeek-R1-Distill served without a reasoning parser: its template opened the thinking."""
    settings = load_settings(
        wechat_token="t",
        redis_url="redis://127.0.0.1:6379/0",
        openai_base_url=f"{fake.url}/v1",
        openai_model="deepseek-r1-distill-qwen-7b",
    )
    return OpenAIBackend(settings)


def test_a_close_tag_without_an_open_one_ends_a_thinking_the_template_opened(fake_openai: FakeOpenAI) -> None:
    llm = r1_backend(fake_openai)
    try:
        fake_openai.set_behavior(reply="Okay, the user asks 1+1.\n</think>\n\n2", chunk_size=3)
        pieces = list(llm.stream([{"role": "user", "content": "q"}]))
        assert [p for p in pieces if isinstance(p, str)] == ["2"]
        assert "".join(p.text for p in pieces if isinstance(p, Reasoning)) == "Okay, the user asks 1+1.\n"
        # reasoning deltas first (a server with a reasoning parser): the content is the answer, as sent
        fake_openai.set_behavior(reasoning="想一想", reply="答案</think>", chunk_size=3)
        pieces = list(llm.stream([{"role": "user", "content": "q"}]))
        assert "".join(p for p in pieces if isinstance(p, str)) == "答案</think>"
        fake_openai.set_behavior(reasoning="", reply="没有想，直接答。")  # no close tag: all of it answers
        assert list(llm.stream([{"role": "user", "content": "q"}])) == ["没有想，直接答。"]
    finally:
        llm.close()


def test_a_thinking_the_template_opened_and_cut_at_the_limit_is_no_answer(fake_openai: FakeOpenAI) -> None:
    llm = r1_backend(fake_openai)
    fake_openai.set_behavior(reply="Let me think about this step by step", finish_reason="length")
    pieces: list[Any] = []
    try:
        with pytest.raises(LLMError) as raised:
            pieces.extend(llm.stream([{"role": "user", "content": "q"}]))
    finally:
        llm.close()
    assert (raised.value.kind, raised.value.detail) == ("cut_short", "length")  # 「AI 想得太久…」
    assert pieces == [Reasoning("Let me think about this step by step")]
