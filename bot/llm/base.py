"""The one small interface every LLM backend implements, and its error type."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal, Protocol

ChatMessage = dict[str, str]
FailureKind = Literal["timeout", "unavailable", "failed"]


class LLMError(Exception):
    """The backend could not answer; `kind` picks the sentence the user is told."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class ChatBackend(Protocol):
    """Streams the assistant's answer to a conversation (OpenAI message format)."""

    name: str

    def stream(self, messages: list[ChatMessage], *, model: str | None = None) -> Generator[str, None, None]:
        """Yield the answer's text in pieces as it is generated; raise LLMError on failure."""
        ...

    def models(self) -> list[str]:
        """The model names this backend can serve."""
        ...

    def close(self) -> None:
        """Release the backend's pooled connections."""
        ...
