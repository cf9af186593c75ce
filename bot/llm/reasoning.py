"""A reasoning model's thinking, told apart from its answer.

OpenAI-compatible servers send it either as `reasoning_content` (or `reasoning`) deltas, which the
backend turns into Reasoning pieces directly, or inside the content, as `<think>…</think>` at its very
start (DeepSeek-R1, QwQ, Qwen3 served without a reasoning parser; FastChat workers too). ThinkFilter
takes the second kind out of a text stream: the thinking becomes Reasoning pieces, the rest is the
answer. Only a `<think>` at the start counts (after blank space): the same tag later in an answer is
the answer's own text (a model explaining the tag, say).

Some models' chat templates open the thinking themselves: DeepSeek-R1 (and its distills), QwQ and
Qwen3's -Thinking releases end the prompt with `<think>\n`, so that a server without a reasoning parser
streams `thinking…</think>\n\nanswer`, no `<think>` in it. For those (`opened_by_template`) the filter
holds the content back until `</think>` tells it apart; a stream that ends without one was the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from bot.llm.base import Piece, Reasoning

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
#: the model names whose chat template opens the thinking (THINK_OPENED_BY_TEMPLATE=auto): R1 as a word
#: of the name (deepseek-r1, DeepSeek-R1-Distill-Qwen-7B, deepseek-r1:14b), QwQ, and any *think* model
TEMPLATE_OPENED = re.compile(r"(?<![a-z0-9])r1(?![0-9])|qwq|think", re.IGNORECASE)


def opened_by_template(setting: Literal["auto", "yes", "no"], model: str) -> bool:
    """Whether `model`'s content may start inside its thinking (THINK_OPENED_BY_TEMPLATE): `auto` says
    so for the names TEMPLATE_OPENED knows. Holding its content back delays the answer's first page
    until `</think>`, so a model that never thinks is not guessed to be one."""
    if setting == "auto":
        return bool(TEMPLATE_OPENED.search(model))
    return setting == "yes"


class ThinkFilter:
    """Feed it the content stream piece by piece; it yields answer text (str) and Reasoning pieces.

    A tag split across pieces is recognised: text that may be the start of a tag is held back until
    the next piece tells. The blank space between `</think>` and the answer is dropped.

    `opened`: the chat template opened the thinking (`opened_by_template`): the content is held back
    until `</think>` (what came before it is thinking) or its end (it was all the answer); a `<think>`
    at its start, or a Reasoning delta (`reasoning_seen`), still means the content is as for any model."""

    def __init__(self, opened: bool = False) -> None:
        # start | opened (maybe inside the template's thinking) | thinking | after (it ended) | answer
        self.state = "opened" if opened else "start"
        self.held = ""
        #: in state `opened`: how much of `held` has been searched for `</think>` (each piece is searched
        #: once, not the whole held text again: a long thinking streamed in small pieces stays linear)
        self.searched = 0

    def feed(self, text: str) -> Iterator[Piece]:
        if self.state == "answer":
            if text:
                yield text
            return
        self.held += text
        if self.state == "opened":
            yield from self._opened()
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

    def reasoning_seen(self) -> Iterator[Piece]:
        """The server sends the thinking apart (a Reasoning delta came): the content is not inside a
        thinking the template opened, whatever the model's name."""
        if self.state == "opened":
            self.state = "start"
            yield from self.feed("")

    def finish(self, complete: bool = True) -> Iterator[Piece]:
        """The stream ended: whatever is still held back is what it seemed to be. `complete`: the model
        said it finished; a content held back for a `</think>` that never came is then the answer, and
        otherwise (cut at the token limit, say) the thinking it was cut in."""
        held, state = self.held, self.state
        self.held, self.state = "", "answer"
        if state == "thinking" and held:
            yield Reasoning(held)
        elif state == "opened" and held.strip():
            yield held if complete else Reasoning(held)
        elif state == "start" and held.strip():
            yield held

    def _opening(self) -> None:
        lead = self.held.lstrip()
        if lead.startswith(OPEN_TAG):
            self.state, self.held = "thinking", lead[len(OPEN_TAG) :]
        elif lead and not OPEN_TAG.startswith(lead):
            self.state = "answer"
        # else: blank so far, or maybe the start of the tag: wait for more

    def _opened(self) -> Iterator[Piece]:
        if not self.searched:
            lead = self.held.lstrip()
            if lead.startswith(OPEN_TAG) or OPEN_TAG.startswith(lead):
                self._opening()  # the model opens its thinking itself (or may: wait for more)
                return
        end = self.held.find(CLOSE_TAG, max(self.searched - len(CLOSE_TAG) + 1, 0))
        self.searched = len(self.held)
        if end >= 0:
            thought, self.held = self.held[:end], self.held[end + len(CLOSE_TAG) :]
            self.state = "after"
            if thought.strip():
                yield Reasoning(thought)
        # else: held back, thinking or answer, until `</think>` or the stream's end tells

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
