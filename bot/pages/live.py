"""What a generation run records for the answer's page while it writes: the model's Markdown so far,
its thinking (unless SHOW_REASONING=never), its sources, its state.

Writes are batched: the run writes at most once every FLUSH_EVERY seconds of its clock (and at each
change of state), each write the record whole, guarded by the run's lease (bot/store/pages.py). What a
run received since its last write is written by the process's flusher thread when the model pauses,
so a page never stays behind an answer that is waiting for its next token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from bot.store.pages import PageStore, Source

log = logging.getLogger(__name__)

#: seconds between two writes of a growing answer (a page polls about once a second)
FLUSH_EVERY = 0.5


class LiveRecord:
    def __init__(
        self,
        pages: PageStore,
        answer_id: str,
        lease: str,
        *,
        keep_reasoning: bool,
        clock: Callable[[], float],
    ) -> None:
        self.pages, self.answer_id, self.lease = pages, answer_id, lease
        self.keep_reasoning = keep_reasoning
        self.clock = clock
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.state = "thinking"
        self.flushed_at: float | None = None
        self.dirty = False
        self.ended = False
        self.lock = threading.Lock()

    def start(self, sources: list[Source]) -> None:
        """A run begins: the record starts over (a restarted run writes the answer again)."""
        with self.lock:
            self._write(text="", reasoning="", state="thinking", error="", sources=sources)

    def think(self, text: str) -> None:
        if self.keep_reasoning:
            with self.lock:
                self.reasoning.append(text)
            self._changed()

    def write(self, text: str) -> None:
        with self.lock:
            self.text.append(text)
            if self.state != "writing":  # the first answer token: the page stops saying "thinking"
                self.state = "writing"
                self._write(**self._body())
                return
        self._changed()

    def list_sources(self, sources: list[Source]) -> None:
        """The answer's sources changed (the model found more with the search tool)."""
        with self.lock:
            self._write(**self._body(), sources=sources)

    def end(self, state: str, error: str = "") -> None:
        with self.lock:
            self.state, self.ended = state, True
            self._write(**self._body(), error=error)

    def flush_if_dirty(self) -> None:
        """The flusher's call: write what came since the last write, if anything did."""
        with self.lock:
            if self.dirty and not self.ended:
                self._write(**self._body())

    def _changed(self) -> None:
        with self.lock:
            self.dirty = True
            if self.flushed_at is None or self.clock() - self.flushed_at >= FLUSH_EVERY:
                self._write(**self._body())
            else:
                FLUSHER.watch(self)

    def _body(self) -> dict[str, str]:
        return {"text": "".join(self.text), "reasoning": "".join(self.reasoning), "state": self.state}

    def _write(self, **fields: str | list[Source]) -> None:
        """A failed write only makes the page a little behind (the chat is what must not fail)."""
        self.flushed_at, self.dirty = self.clock(), False
        try:
            self.pages.write(self.answer_id, self.lease, **fields)
        except redis.exceptions.RedisError as exc:
            log.warning("answer page of %s not updated: %s", self.answer_id, exc)


class Flusher:
    """One daemon thread per process that writes the records left dirty, FLUSH_EVERY after they were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[int, LiveRecord] = {}
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def watch(self, record: LiveRecord) -> None:
        with self.lock:
            self.waiting[id(record)] = record
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="page-flusher", daemon=True)
                self.thread.start()
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            time.sleep(FLUSH_EVERY)
            with self.lock:
                records = list(self.waiting.values())
                self.waiting.clear()
                self.wake.clear()
            for record in records:
                try:
                    record.flush_if_dirty()
                except Exception:  # a bug here must not end the thread: the next records still need it
                    log.exception("answer page flush failed")


FLUSHER = Flusher()
