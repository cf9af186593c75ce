"""The `openai` backend: the official SDK against api.openai.com or any OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Generator
from typing import cast

import openai
from openai.types.chat import ChatCompletionChunk

from bot.config import Settings
from bot.llm.base import ChatMessage, LLMError, check_finished


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

    def stream(self, messages: list[ChatMessage], *, model: str | None = None) -> Generator[str, None, None]:
        try:
            chunks = cast(
                openai.Stream[ChatCompletionChunk],
                self.client.chat.completions.create(
                    model=model or self.model,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                    stream=True,
                ),
            )
            finish_reason = None
            with chunks:  # a reader that stops early (closes this generator) also closes the response
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    finish_reason = chunk.choices[0].finish_reason or finish_reason
                    if chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            check_finished(finish_reason)
        except openai.APITimeoutError as exc:
            raise LLMError("timeout", f"OpenAI timeout: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise LLMError("unavailable", f"OpenAI unreachable: {exc}") from exc
        except openai.OpenAIError as exc:
            raise LLMError("failed", f"OpenAI error: {exc}") from exc

    def models(self) -> list[str]:
        try:
            return sorted(model.id for model in self.client.models.list())
        except openai.OpenAIError as exc:
            raise LLMError("unavailable", f"cannot list models: {exc}") from exc

    def close(self) -> None:
        self.client.close()
