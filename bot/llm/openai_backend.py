"""The `openai` backend: the official SDK against api.openai.com or any OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import httpx2

from bot.config import Settings
from bot.lazy import LazyModule
from bot.llm.base import (
    CUT_REASONS,
    ChatMessage,
    LLMError,
    Piece,
    Reasoning,
    ToolCall,
    ToolCalls,
    ToolOffer,
    check_finished,
    stream_object,
)
from bot.llm.reasoning import ThinkFilter, opened_by_template

if TYPE_CHECKING:
    import openai
else:  # imported on first use (bot/lazy.py): 40 MiB that a process which never calls the API does not load
    openai = LazyModule("openai")

#: seconds for listing the served models (routing to experts, `make check`): a listing that hangs must
#: not hold up an answer for the whole request timeout
LIST_TIMEOUT = 3.0
#: the delta fields servers stream a model's thinking in: vLLM, DeepSeek, SGLang and FastChat say
#: `reasoning_content`; newer vLLM releases, OpenRouter and Ollama say `reasoning`
REASONING_FIELDS = ("reasoning_content", "reasoning")


def reasoning_of(delta: dict[str, Any]) -> str:
    """The thinking a delta carries (a field OpenAI's own API does not have), or ""."""
    for name in REASONING_FIELDS:
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


class ToolCallCollector:
    """Puts streamed `tool_calls` deltas back together: each call's id and name come in its first
    delta, its arguments in pieces, all keyed by the call's index (parallel calls interleave).

    Servers that send no `index` (Gemini's OpenAI-compatible endpoint, older Ollama releases) send the
    calls one after another: a delta with another id, or another function name, than the last call's
    starts the next call; any other delta goes on with the last one."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, str]] = {}

    def feed(self, deltas: list[dict[str, Any]] | None) -> None:
        for delta in deltas or []:
            function = _member(delta, "function")
            part = self.parts.setdefault(
                self._index(delta, function), {"id": "", "name": "", "arguments": ""}
            )
            part["id"] = delta.get("id") or part["id"]
            if function:
                part["name"] = part["name"] or function.get("name") or ""  # sent once, with the first delta
                part["arguments"] += function.get("arguments") or ""

    def _index(self, delta: dict[str, Any], function: dict[str, Any]) -> int:
        if delta.get("index") is not None:
            return int(delta["index"])
        if not self.parts:
            return 0
        last = max(self.parts)
        current, call_id, name = self.parts[last], delta.get("id"), function.get("name")
        if call_id and current["id"]:
            return last + 1 if call_id != current["id"] else last
        return last + 1 if name and current["name"] and name != current["name"] else last

    def __bool__(self) -> bool:
        return bool(self.parts)

    def finish(self) -> ToolCalls:
        calls = (
            ToolCall(part["id"] or f"call_{index}", part["name"], part["arguments"])
            for index, part in sorted(self.parts.items())
        )
        return ToolCalls(tuple(calls))


def make_client(settings: Settings) -> openai.OpenAI:
    """One client per process (it is thread-safe and pools its connections)."""
    timeout = openai.Timeout(settings.openai_timeout, connect=settings.openai_connect_timeout)
    return openai.OpenAI(
        api_key=settings.openai_api_key or "EMPTY",
        base_url=settings.openai_base_url,
        timeout=timeout,
        max_retries=1,
    )


class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: Settings, client: openai.OpenAI | None = None) -> None:
        self.client = client or make_client(settings)
        self.model = settings.openai_model
        self.max_tokens = settings.llm_max_tokens
        self.temperature = settings.llm_temperature
        self.think_opened = settings.think_opened_by_template

    def stream(
        self, messages: list[ChatMessage], *, model: str | None = None
    ) -> Generator[Piece, None, None]:
        """The answer's text; a reasoning model's thinking (reasoning_content deltas, or <think>…</think>
        at the start of the content) as Reasoning pieces."""
        for piece in self._stream(messages, model, None):
            if not isinstance(piece, ToolCalls):  # none are offered: a stray call is not an answer
                yield piece

    def stream_with_tools(
        self, messages: list[ChatMessage], *, model: str | None, tools: ToolOffer
    ) -> Generator[Piece | ToolCalls, None, None]:
        """As `stream`, the tools offered; the calls the model makes come last, as one ToolCalls."""
        return self._stream(messages, model, tools)

    def _stream(
        self, messages: list[ChatMessage], model: str | None, tools: ToolOffer | None
    ) -> Generator[Piece | ToolCalls, None, None]:
        model = model or self.model
        thoughts = ThinkFilter(opened_by_template(self.think_opened, model))
        calls = ToolCallCollector()
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
        }
        if tools is not None:
            body |= {"tools": list(tools.schemas), "tool_choice": "none" if tools.final else "auto"}
        try:
            finish_reason = None
            response = self._request(body)
            try:  # a reader that stops early (closes this generator) also closes the response
                for chunk in chunks_of(response):
                    choice = _first_choice(chunk)
                    finish_reason = choice.get("finish_reason") or finish_reason
                    delta = _member(choice, "delta")
                    if thought := reasoning_of(delta):
                        yield from thoughts.reasoning_seen()
                        yield Reasoning(thought)
                    if content := delta.get("content"):
                        yield from thoughts.feed(content)
                    calls.feed(delta.get("tool_calls"))
            finally:
                response.close()
            yield from thoughts.finish(complete=finish_reason not in (None, *CUT_REASONS))
            if calls:
                yield calls.finish()
                return
            check_finished(finish_reason)
        except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
            raise LLMError("timeout", f"OpenAI timeout: {exc}") from exc
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            raise LLMError("unavailable", f"OpenAI unreachable: {exc}") from exc
        except openai.APIStatusError as exc:
            raise LLMError("failed", self._status_detail(exc, body["model"]), exc.status_code) from exc
        except openai.OpenAIError as exc:
            raise LLMError("failed", f"OpenAI error: {exc}") from exc

    def _status_detail(self, exc: openai.APIStatusError, model: str) -> str:
        """An error status for the log, with what an operator needs to tell a wrong key (401) from a wrong
        model name or base URL (404): the server's own words, the model and the URL asked."""
        try:
            said = exc.response.text[:200]
        except httpx2.ResponseNotRead:  # a streamed error body the SDK did not read
            said = str(exc)
        url = exc.request.url if exc.request is not None else self.client.base_url
        return f"OpenAI error {exc.status_code} for model {model!r} at {url}: {said}"

    def _request(self, body: dict[str, Any]) -> httpx2.Response:
        """The streamed response to a chat completion, its status checked (an error status raises the
        SDK's APIStatusError, after its retries), its events not yet read: the SDK's documented way to
        make a request whose response it does not parse (`cast_to=httpx.Response`).

        Not `chat.completions.create(stream=True)`: that one walks the request through the SDK's typed
        transformation (1–1.5 ms of CPU per request here, messages are already the API's JSON), builds a
        pydantic object for every streamed chunk (about 0.1 ms each, hundreds per answer), and closes the
        connection after `[DONE]` without reading the body's end, so every answer opened a new one (a new
        TLS handshake against a real API). `bench/` measures the answer's end with and without it."""
        return self.client.post("/chat/completions", body=body, cast_to=httpx2.Response, stream=True)

    def models(self) -> list[str]:
        try:
            quick = self.client.with_options(timeout=LIST_TIMEOUT, max_retries=0)
            return sorted(model.id for model in quick.models.list())
        except openai.OpenAIError as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            raise LLMError("unavailable", f"cannot list models: {exc}", status) from exc

    def close(self) -> None:
        self.client.close()


def chunks_of(response: httpx2.Response) -> Iterator[dict[str, Any]]:
    """The JSON chunks of a chat completion's event stream, up to `[DONE]`; the body is then read to
    its end, so that the connection goes back to the pool.

    Server-sent events as OpenAI-compatible servers send them (`data: <json>` events separated by a blank
    line; comments and other fields ignored), parsed here rather than by the SDK's stream for the reasons
    in `OpenAIBackend._request`. An event with an `error` member (sent by some servers after a 200 status)
    raises LLMError."""
    data: list[str] = []
    response.encoding = "utf-8"  # an event stream is UTF-8 whatever charset its Content-Type names
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue
        if line or not data:
            continue  # a comment, another field, or a blank line with no event before it
        event, data = "\n".join(data), []
        if event.strip() == "[DONE]":
            break
        yield _chunk(event)
    else:
        if data and "\n".join(data).strip() != "[DONE]":  # the last event without its blank line
            yield _chunk("\n".join(data))
    for _ in lines:  # the end of the body: nothing after [DONE] is used
        pass


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chunk's first choice ({} for a chunk without one, e.g. the usage at the end)."""
    choices = chunk.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _member(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _chunk(event: str) -> dict[str, Any]:
    chunk = stream_object(event, "OpenAI stream")
    if error := chunk.get("error"):
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise LLMError("failed", f"OpenAI error: {message or 'an error occurred during streaming'}")
    return chunk
