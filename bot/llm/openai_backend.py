"""The `openai` backend: the official SDK against api.openai.com or any OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionChunk

from bot.config import Settings
from bot.llm.base import (
    ChatMessage,
    LLMError,
    Piece,
    Reasoning,
    ToolCall,
    ToolCalls,
    ToolOffer,
    check_finished,
)
from bot.llm.reasoning import ThinkFilter

#: seconds for listing the served models (routing to experts, `make check`): a listing that hangs must
#: not hold up an answer for the whole request timeout
LIST_TIMEOUT = 3.0
#: the delta fields servers stream a model's thinking in: vLLM, DeepSeek, SGLang and FastChat say
#: `reasoning_content`; newer vLLM releases, OpenRouter and Ollama say `reasoning`
REASONING_FIELDS = ("reasoning_content", "reasoning")


def reasoning_of(delta: Any) -> str:
    """The thinking a delta carries (an extra field the SDK keeps as an attribute), or ""."""
    for name in REASONING_FIELDS:
        value = getattr(delta, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


class ToolCallCollector:
    """Puts streamed `tool_calls` deltas back together: each call's id and name come in its first
    delta, its arguments in pieces, all keyed by the call's index (parallel calls interleave)."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, str]] = {}

    def feed(self, deltas: list[Any] | None) -> None:
        for delta in deltas or []:
            part = self.parts.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            part["id"] = delta.id or part["id"]
            function = delta.function
            if function is not None:
                part["name"] = part["name"] or function.name or ""  # sent once, with the first delta
                part["arguments"] += function.arguments or ""

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
        thoughts, calls = ThinkFilter(), ToolCallCollector()
        extra: dict[str, Any] = {}
        if tools is not None:
            extra = {"tools": list(tools.schemas), "tool_choice": "none" if tools.final else "auto"}
        try:
            chunks = cast(
                openai.Stream[ChatCompletionChunk],
                self.client.chat.completions.create(
                    model=model or self.model,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                    stream=True,
                    **extra,
                ),
            )
            finish_reason = None
            with chunks:  # a reader that stops early (closes this generator) also closes the response
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    finish_reason = chunk.choices[0].finish_reason or finish_reason
                    delta = chunk.choices[0].delta
                    if thought := reasoning_of(delta):
                        yield Reasoning(thought)
                    if delta.content:
                        yield from thoughts.feed(delta.content)
                    calls.feed(delta.tool_calls)
            yield from thoughts.finish()
            if calls:
                yield calls.finish()
                return
            check_finished(finish_reason)
        except openai.APITimeoutError as exc:
            raise LLMError("timeout", f"OpenAI timeout: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise LLMError("unavailable", f"OpenAI unreachable: {exc}") from exc
        except openai.OpenAIError as exc:
            raise LLMError("failed", f"OpenAI error: {exc}") from exc

    def models(self) -> list[str]:
        try:
            quick = self.client.with_options(timeout=LIST_TIMEOUT, max_retries=0)
            return sorted(model.id for model in quick.models.list())
        except openai.OpenAIError as exc:
            raise LLMError("unavailable", f"cannot list models: {exc}") from exc

    def close(self) -> None:
        self.client.close()
