"""One small strategy per kind of answer: what to ask the LLM (or what to make instead), and what
to do when the answer is written or fails. The job (generation.py) streams and pages any kind the
same way and never asks which kind it is running."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from bot import texts
from bot.llm import ChatMessage
from bot.media.images import Refusal
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.store.answers import Answer

#: /minutes end waits this long for voice pieces still being transcribed (seconds)
MINUTES_WAIT_SECONDS = 60


@dataclass(frozen=True)
class Prompt:
    """A conversation for the LLM; `remember`: the question to add to the user's history with the answer."""

    messages: list[ChatMessage]
    remember: str | None


@dataclass(frozen=True)
class Made:
    """An answer that needs no LLM: its finished pages (e.g. an image)."""

    pages: list[str]


class Kind(Protocol):
    def prepare(self, answer: Answer) -> Prompt | Made:
        """What to generate; raise Refusal, TranscriptionError or LLMError to fail with plain words."""
        ...

    def written(self, answer: Answer) -> None:
        """The answer is complete."""
        ...

    def failure_note(self, answer: Answer) -> str:
        """Added to the failure text the user reads."""
        ...


class TextKind:
    """A question: the conversation so far, the system prompt, moderation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def prepare(self, answer: Answer) -> Prompt | Made:
        question = self.question(answer)
        if self.runtime.moderator.refuses(question):
            raise Refusal(texts.REFUSED_SENSITIVE, "question refused by moderation")
        system = self.runtime.overrides.system_prompt()
        return Prompt(self.runtime.history.prompt(answer.openid, system, question), remember=question)

    def question(self, answer: Answer) -> str:
        return answer.question

    def written(self, answer: Answer) -> None:
        pass

    def failure_note(self, answer: Answer) -> str:
        return ""


class VoiceKind(TextKind):
    """A voice message WeChat did not recognise: transcribed first, then answered like text."""

    def question(self, answer: Answer) -> str:
        if answer.question:  # transcribed by an earlier run
            return answer.question
        text = self.runtime.transcriber.transcribe_media(answer.media_id)
        if not text:
            raise TranscriptionError("empty transcript")
        self.runtime.answers.set_question(answer.id, text)
        return text


class ImageKind:
    """/image: generated, uploaded to WeChat, one image page."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def prepare(self, answer: Answer) -> Prompt | Made:
        return Made([self.runtime.images.make(answer.question)])

    def written(self, answer: Answer) -> None:
        pass

    def failure_note(self, answer: Answer) -> str:
        return ""


class MinutesKind:
    """/minutes end: the meeting's pieces, once every voice piece is transcribed, written up."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def prepare(self, answer: Answer) -> Prompt | Made:
        transcript = answer.question or self._transcript(answer)
        question = texts.MINUTES_PROMPT.format(transcript=transcript)
        system = {"role": "system", "content": texts.MINUTES_SYSTEM}
        return Prompt([system, {"role": "user", "content": question}], remember=None)

    def _transcript(self, answer: Answer) -> str:
        minutes = self.runtime.minutes
        deadline = time.monotonic() + MINUTES_WAIT_SECONDS
        while minutes.pending(answer.openid) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        pieces = minutes.pieces(answer.openid)
        if not pieces:
            raise Refusal(texts.MINUTES_EMPTY, "no minutes recorded")
        transcript = "\n".join(f"{index}. {piece}" for index, piece in enumerate(pieces, 1))
        # kept on the answer too, so that a restarted run writes the same minutes
        self.runtime.answers.set_question(answer.id, transcript)
        return transcript

    def written(self, answer: Answer) -> None:
        self.runtime.minutes.clear(answer.openid)  # only now is the recording no longer needed

    def failure_note(self, answer: Answer) -> str:
        """The recording is kept (and on again) so that /minutes end can be sent again."""
        return texts.MINUTES_KEPT if self.runtime.minutes.resume(answer.openid) else ""


def kinds(runtime: Runtime) -> dict[str, Kind]:
    return {
        "text": TextKind(runtime),
        "voice": VoiceKind(runtime),
        "image": ImageKind(runtime),
        "minutes": MinutesKind(runtime),
    }
