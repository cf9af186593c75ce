"""The one small interface every LLM backend implements, and its error type."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

#: an OpenAI-format message; `content` is a string, or a list of parts (text and image_url) for a
#: vision model
ChatMessage = dict[str, Any]
FailureKind = Literal["timeout", "unavailable", "failed", "cut_short"]


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's thinking (reasoning_content, or <think>…</think>): never part of the
    answer the user reads in chat; the answer page may show it."""

    text: str


#: what a stream yields: the answer's text (a plain str), or a piece of the model's thinking
Piece = str | Reasoning


def text_only(pieces: Iterable[Piece]) -> Iterator[str]:
    """The answer's text of a stream, the model's thinking left out."""
    return (piece for piece in pieces if isinstance(piece, str))


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for: `arguments` is the JSON text it wrote (maybe not JSON)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCalls:
    """The calls the model asked for at the end of a stream (one, or several in parallel)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class ToolOffer:
    """The tools offered with a request (OpenAI's `tools`); `final`: the model must answer in words now
    (`tool_choice: none`), the tools still described so that the calls in the messages make sense."""

    schemas: tuple[dict[str, Any], ...]
    final: bool = False


class LLMError(Exception):
    """The backend could not answer; `kind` picks the sentence the user is told. `cut_short`: the
    answer stopped before its end (the token limit, or a stream that ended without its last event):
    what was written stays, followed by a note that says so."""

    def __init__(
        self, kind: FailureKind, detail: str, status: int | None = None, *, empty: bool = False
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        #: the server's HTTP error status, when it answered with one (`make check` tells 401 from 404)
        self.status = status
        #: the model answered, with nothing in it (only blanks, or only its thinking): the user is asked
        #: to put the question otherwise, not told that the service failed
        self.empty = empty
        #: the model's text (Markdown) written before it stopped, when the run knows it
        self.written = ""
        #: the turn (question, partial answer) the history keeps of an answer cut at the token limit
        self.turn: tuple[str, str] | None = None


def stream_object(raw: str | bytes, sender: str) -> dict[str, Any]:
    """One JSON object of a model server's stream; LLMError (`failed`) naming `sender` for anything else."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LLMError("failed", f"{sender} sent invalid JSON: {raw[:200]!r}") from exc
    if not isinstance(data, dict):
        raise LLMError("failed", f"{sender} sent {type(data).__name__}, not an object")
    return data


#: finish reasons of an answer stopped before its end: `length` (the token limit), `content_filter`
#: (OpenAI's moderation; Zhipu GLM's `sensitive`), DeepSeek's `insufficient_system_resource`, vLLM's
#: `abort`, Zhipu's `network_error`. Anything else (`stop`, `tool_calls`, `eos` from Together, `eos_token`
#: from TGI and watsonx, `end_turn`…) is the model's own end: a list of the ways to stop early, because
#: servers name a normal end in many ways.
CUT_REASONS = {
    "length": "length",
    "content_filter": "content_filter",
    "sensitive": "content_filter",
    "insufficient_system_resource": "insufficient_system_resource",
    "abort": "abort",
    "network_error": "network_error",
}


def check_finished(finish_reason: str | None) -> None:
    """Raise `cut_short` unless the model said it finished (OpenAI and FastChat both send a
    finish_reason in their last event: `stop`, or `length` at the token limit); its detail is the
    reason, `length` and `content_filter` under one name whatever the server called them."""
    if finish_reason is None:
        raise LLMError("cut_short", "the stream ended without its last event")
    if finish_reason in CUT_REASONS:
        raise LLMError("cut_short", CUT_REASONS[finish_reason])


class ChatBackend(Protocol):
    """Streams the assistant's answer to a conversation (OpenAI message format)."""

    name: str

    def stream(
        self, messages: list[ChatMessage], *, model: str | None = None
    ) -> Generator[Piece, None, None]:
        """Yield the answer's text in pieces (str) as it is generated, and the model's thinking, if it
        shows any, as Reasoning pieces; raise LLMError on failure."""
        ...

    def models(self) -> list[str]:
        """The model names this backend can serve."""
        ...

    def close(self) -> None:
        """Release the backend's pooled connections."""
        ...


@runtime_checkable
class ToolCallingBackend(Protocol):
    """A backend whose models can call functions (OpenAI-compatible `tools` and streamed `tool_calls`).
    FastChat's worker API has no tool protocol: the FastChat backend is not one."""

    def stream_with_tools(
        self, messages: list[ChatMessage], *, model: str | None, tools: ToolOffer
    ) -> Generator[Piece | ToolCalls, None, None]:
        """As `stream`, and, when the model calls tools, one ToolCalls at the end."""
        ...
