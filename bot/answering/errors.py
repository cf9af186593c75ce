"""What the user reads when an answer cannot be written, and the reason recorded for operators."""

from __future__ import annotations

from dataclasses import dataclass

from bot import texts
from bot.llm import LLMError
from bot.media.images import Refusal
from bot.media.voice import TranscriptionError

#: the exceptions that end a job with plain words instead of an answer
EXPECTED = (LLMError, TranscriptionError, Refusal)

_LLM_TEXTS = {"timeout": texts.LLM_TIMEOUT, "unavailable": texts.LLM_FAILED, "failed": texts.LLM_FAILED}


@dataclass(frozen=True)
class Failure:
    text: str  # for the user
    reason: str  # the `job_failures` metric's label


def describe(exc: Exception, written: bool = False) -> Failure:
    """The plain sentence for a failed answer; an unexpected error reads like a failed LLM call.
    `written`: part of the answer was written before it failed (the user reads it, then this note)."""
    if isinstance(exc, Refusal):
        return Failure(exc.text, "refused")
    if isinstance(exc, LLMError) and exc.kind == "cut_short":
        return Failure(_cut_note(exc.detail, written), exc.kind)
    if isinstance(exc, LLMError) and written:  # the text so far is there: say that it is incomplete
        return Failure(texts.LLM_CUT_SHORT, exc.kind)
    if isinstance(exc, LLMError):
        return Failure(texts.LLM_EMPTY if exc.empty else _LLM_TEXTS[exc.kind], exc.kind)
    if isinstance(exc, TranscriptionError):
        text = texts.VOICE_UNRECOGNISED if exc.empty else texts.VOICE_FAILED
        return Failure(text, "voice")
    return Failure(texts.LLM_CUT_SHORT if written else texts.LLM_FAILED, "failed")


def _cut_note(detail: str, written: bool) -> str:
    """Why an answer stopped early (LLMError `cut_short`'s detail: the finish reason)."""
    if detail == "length":
        return texts.LLM_CUT_AT_LIMIT if written else texts.LLM_THOUGHT_TOO_LONG
    if detail == "content_filter":
        return texts.LLM_CUT_BY_FILTER
    return texts.LLM_CUT_SHORT if written else texts.LLM_FAILED
