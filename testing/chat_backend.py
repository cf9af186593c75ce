"""ScriptedBackend: an in-process ChatBackend (bot.llm.base) that answers from a script, in fake time.

Each question (the last user message of a conversation) can be given a script: the pieces of its
answer, each at a number of fake seconds after the LLM was called, then the end — or an LLMError,
or never an end. A question without a script is answered at once with "echo: <question>", like the
loopback FakeOpenAI. The pieces wait on a testing.clock.FakeClock: in a task of that clock the
stream pauses in fake time, so a job run in-process streams exactly on the script.

    backend.answer("hello", "echo: hello", after=4.3)          # the whole answer at t+4.3
    backend.stream_pieces("long", [(1.0, "第一段"), (9.0, "第二段")])
    backend.fail("bad", LLMError("unavailable", "HTTP 503"), after=1.0)
    backend.hang("stuck")                                        # starts, never ends
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Literal

from bot import texts
from bot.llm.base import ChatMessage, LLMError
from testing.clock import Cancelled, FakeClock

CallOutcome = Literal["streaming", "done", "failed", "hung up", "cancelled"]


def echo_answer(question: str) -> str:
    return f"echo: {question}"


@dataclass(frozen=True)
class Script:
    """What the model does for one question: `pieces` as (seconds after the call, text), then `error`
    (raised `error_after` seconds after the call) or, with `hang`, nothing ever again."""

    pieces: tuple[tuple[float, str], ...] = ()
    error: LLMError | None = None
    error_after: float = 0.0
    hang: bool = False


@dataclass
class Call:
    """One call of `stream`, as the backend saw it."""

    question: str
    messages: list[ChatMessage]
    model: str | None
    started: float
    ended: float | None = None
    outcome: CallOutcome = "streaming"
    pieces: list[str] = field(default_factory=list)


def question_of(messages: list[ChatMessage]) -> str:
    """The question the last user message asks: its text, without the earlier questions that a question
    sent in a burst carries before it (texts.EARLIER_QUESTIONS) — the model answers the question, and
    scripts are keyed by it."""
    users = [message for message in messages if message.get("role") == "user"]
    return without_earlier(str(users[-1].get("content", ""))) if users else ""


def without_earlier(content: str) -> str:
    head, _, rest = texts.EARLIER_QUESTIONS.partition("{questions}")
    between = rest.partition("{question}")[0]
    if not content.startswith(head) or between not in content[len(head) :]:
        return content
    return content[len(head) :].split(between, 1)[1]


class ScriptedBackend:
    """A ChatBackend (name, stream, models, close) that plays scripts on a FakeClock."""

    name = "scripted"

    def __init__(self, clock: FakeClock, default: Callable[[str], str] = echo_answer) -> None:
        self.clock = clock
        self.default = default
        self.scripts: dict[str, Script] = {}
        self.calls: list[Call] = []
        self.closed = False

    # --- scripting ------------------------------------------------------------------------------
    def script(self, question: str, script: Script) -> None:
        self.scripts[question] = script

    def answer(self, question: str, text: str, *, after: float = 0.0) -> None:
        """The whole answer `after` seconds after the call."""
        self.script(question, Script(pieces=((after, text),)))

    def stream_pieces(self, question: str, pieces: Iterable[tuple[float, str]]) -> None:
        self.script(question, Script(pieces=tuple(pieces)))

    def fail(
        self,
        question: str,
        error: LLMError,
        *,
        after: float = 0.0,
        pieces: Iterable[tuple[float, str]] = (),
    ) -> None:
        """Fail `after` seconds after the call (having streamed `pieces` first)."""
        self.script(question, Script(pieces=tuple(pieces), error=error, error_after=after))

    def hang(self, question: str, pieces: Iterable[tuple[float, str]] = ()) -> None:
        """Stream `pieces`, then never end (the scene's end stops it)."""
        self.script(question, Script(pieces=tuple(pieces), hang=True))

    # --- reading what happened -------------------------------------------------------------------
    def calls_for(self, question: str) -> list[Call]:
        return [call for call in self.calls if call.question == question]

    # --- ChatBackend -------------------------------------------------------------------------------
    def stream(self, messages: list[ChatMessage], *, model: str | None = None) -> Generator[str, None, None]:
        question = question_of(messages)
        call = Call(question, [dict(message) for message in messages], model, self.clock.now)
        self.calls.append(call)
        script = self.scripts.get(question) or Script(pieces=((0.0, self.default(question)),))
        return self._play(call, script)

    def _play(self, call: Call, script: Script) -> Generator[str, None, None]:
        try:
            for after, piece in script.pieces:
                self.clock.sleep_until(call.started + after)
                call.pieces.append(piece)
                yield piece
            if script.hang:
                self.clock.sleep_until(math.inf)
            if script.error is not None:
                self.clock.sleep_until(call.started + script.error_after)
                call.outcome = "failed"
                raise LLMError(script.error.kind, script.error.detail)
            call.outcome = "done"
        except GeneratorExit:
            call.outcome = "hung up"
            raise
        except Cancelled:
            call.outcome = "cancelled"
            raise
        finally:
            call.ended = self.clock.now

    def models(self) -> list[str]:
        return ["scripted"]

    def close(self) -> None:
        self.closed = True
