"""The one small interface every LLM backend implements, and its error type."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal, Protocol

ChatMessage = dict[str, str]
FailureKind = Literal["timeout", "unavailable", "failed", "cut_short"]


class LLMError(Exception):
    """The backend could not answer; `kind` picks the sentence the user is told. `cut_short`: the
    answer stopped before its end (the token limit, or a stream that ended without its last event):
    what was written stays, followed by a note that says so."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def check_finished(finish_reason: str | None) -> None:
    """Raise `cut_short` unless the model said it finished (OpenAI and FastChat both send a
    finish_reason in their last event: `stop`, or `length` at the token limit)."""
    if finish_reason == "length":
        raise LLMError("cut_short", "length")
    if finish_reason is None:
        raise LLMError("cut_short", "the stream ended without its last event")


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
