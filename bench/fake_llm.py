"""FakeOpenAI that takes a random time per answer and records when it sent each answer's last byte.

The reply delay is measured from that moment: it is what the bot itself adds (queue, Redis,
waking the waiting request, the reply) once the model is done, whatever the model's own speed.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time

from testing.fakes.base import FakeHandler
from testing.fakes.openai_server import Behavior, FakeOpenAI, message_text


class TimedFakeOpenAI(FakeOpenAI):
    """Each (streamed: the bot streams) request waits a random first_token_delay in [low, high].

    The fake's default echo model keeps every user's answer unique, so answers map back to users.
    """

    def __init__(self, low: float, high: float, seed: int = 1) -> None:
        super().__init__()
        self.low, self.high = low, high
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._done_lock = threading.Lock()
        self._finished: dict[str, list[float]] = {}

    @property
    def behavior(self) -> Behavior:
        """A fresh random delay for every request (`handle` reads this once per request)."""
        with self._random_lock:
            delay = self._random.uniform(self.low, self.high)
        return dataclasses.replace(super().behavior, first_token_delay=delay)

    def _stream(
        self, handler: FakeHandler, behavior: Behavior, model: str, text: str, usage: dict[str, int] | None
    ) -> None:
        super()._stream(handler, behavior, model, text, usage)
        if not self.stopping.is_set():
            self._record(text, time.time())

    def _record(self, text: str, at: float) -> None:
        with self._done_lock:
            self._finished.setdefault(text, []).append(at)

    def finished_at(self, answer: str) -> list[float]:
        """Wall times at which answers with this text were completely sent (several if regenerated)."""
        with self._done_lock:
            return list(self._finished.get(answer, []))


def expected_answer(question: str) -> str:
    """What the echo model answers to `question` (see testing.fakes.openai_server.echo)."""
    return "echo: " + message_text({"content": question})
