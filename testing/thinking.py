"""ThinkingBackend: an in-process ChatBackend that plays one script of a reasoning model — Reasoning
pieces and answer text, each at a number of fake seconds after the call — on a testing.clock.FakeClock,
so that a model thinking for 40 s takes milliseconds of the test.

    backend = ThinkingBackend(clock, [(1.0, Reasoning("嗯…")), (40.0, Reasoning("想好了")), (41.0, "答案")])
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from bot.llm.base import ChatMessage, Piece
from testing.clock import FakeClock


class ThinkingBackend:
    name = "thinking"

    def __init__(self, clock: FakeClock, script: Sequence[tuple[float, Piece]]) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[list[ChatMessage]] = []

    def stream(
        self, messages: list[ChatMessage], *, model: str | None = None
    ) -> Generator[Piece, None, None]:
        self.calls.append(messages)
        return self._play(self.clock.now)

    def _play(self, started: float) -> Generator[Piece, None, None]:
        for after, piece in self.script:
            self.clock.sleep_until(started + after)
            yield piece

    def models(self) -> list[str]:
        return ["thinking"]

    def close(self) -> None:
        pass


class RecordingSender:
    """Stands in for bot.delivery.active.ActiveSender: records when the typing indicator was asked
    for (fake seconds) and which answers' pages were to be sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.typing_at: list[float] = []
        self.sends: list[str] = []

    def typing(self, openid: str) -> None:
        self.typing_at.append(self.clock.now)

    def send_ready_pages(self, answer_id: str) -> None:
        self.sends.append(answer_id)
