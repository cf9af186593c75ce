"""A reasoning model's thinking, told apart from its answer.

OpenAI-compatible servers send it either as `reasoning_content` (or `reasoning`) deltas, which the
backend turns into Reasoning pieces directly, or inside the content, as `<think>…</think>` at its very
start (DeepSeek-R1, QwQ, Qwen3 served without a reasoning parser; FastChat workers too). ThinkFilter
takes the second kind out of a text stream: the thinking becomes Reasoning pieces, the rest is the
answer. Only a `<think>` at the start counts (after blank space): the same tag later in an answer is
the answer's own text (a model explaining the tag, say).
"""

from __future__ import annotations

from collections.abc import Iterator

from bot.llm.base import Piece, Reasoning

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class ThinkFilter:
    """Feed it the content stream piece by piece; it yields answer text (str) and Reasoning pieces.

    A tag split across pieces is recognised: text that may be the start of a tag is held back until
    the next piece tells. The blank space between `</think>` and the answer is dropped."""

    def __init__(self) -> None:
        self.state = "start"  # start | thinking | after (the thinking ended) | answer
        self.held = ""

    def feed(self, text: str) -> Iterator[Piece]:
        if self.state == "answer":
            if text:
                yield text
            return
        self.held += text
        if self.state == "start":
            self._opening()
        if self.state == "thinking":
            yield from self._thinking()
        if self.state == "after":
            self.held = self.held.lstrip()
            if self.held:
                self.state = "answer"
        if self.state == "answer" and self.held:
            held, self.held = self.held, ""
            yield held

    def finish(self) -> Iterator[Piece]:
        """The stream ended: whatever is still held back is what it seemed to be."""
        held, state = self.held, self.state
        self.held, self.state = "", "answer"
        if state == "thinking" and held:
            yield Reasoning(held)
        elif state == "start" and held.strip():
            yield held

    def _opening(self) -> None:
        lead = self.held.lstrip()
        if lead.startswith(OPEN_TAG):
            self.state, self.held = "thinking", lead[len(OPEN_TAG) :]
        elif lead and not OPEN_TAG.startswith(lead):
            self.state = "answer"
        # else: blank so far, or maybe the start of the tag: wait for more

    def _thinking(self) -> Iterator[Piece]:
        end = self.held.find(CLOSE_TAG)
        if end >= 0:
            thought, self.held = self.held[:end], self.held[end + len(CLOSE_TAG) :]
            self.state = "after"
        else:
            keep = _partial_suffix(self.held, CLOSE_TAG)
            thought, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        if thought:
            yield Reasoning(thought)


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
