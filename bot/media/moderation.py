"""Optional moderation, off by default: a sensitive-word list (questions refused, answers masked)
and OpenAI's moderation endpoint for questions (MODERATION=true)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.lazy import LazyModule

if TYPE_CHECKING:
    import openai
else:  # imported on first use (bot/lazy.py): 40 MiB that a process which never calls the API does not load
    openai = LazyModule("openai")

log = logging.getLogger(__name__)


def load_words(settings: Settings) -> list[str]:
    words = list(settings.sensitive_words)
    if settings.sensitive_words_file:
        lines = Path(settings.sensitive_words_file).read_text(encoding="utf-8").splitlines()
        words += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return sorted(set(words), key=len, reverse=True)


#: what each character of a sensitive word becomes
MASKED = "*"
#: the same in Markdown (the answer page's source), where `*` is a mark
MASKED_IN_MARKDOWN = "＊"
#: inline marks that may stand between the characters of a word in Markdown (`**某某**公司`)
_INLINE_MARKS = frozenset("*_~`")


@dataclass(frozen=True)
class WordList:
    """Sensitive words, compiled once per list."""

    words: tuple[str, ...]

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        ordered = sorted(set(self.words), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None

    @property
    def longest(self) -> int:
        return max(map(len, self.words), default=0)

    def mask(self, text: str) -> str:
        pattern = self.pattern
        if pattern is None:
            return text
        return pattern.sub(lambda found: MASKED * len(found.group(0)), text)

    def mask_markdown(self, source: str) -> str:
        """`source` (Markdown) with every character of its sensitive words masked, also where inline
        marks stand between them (`**某某**公司`): the page then hides what the chat hides, and the marks
        stay marks. The mask is no Markdown mark itself (`*` would turn the text around it bold)."""
        pattern = self.pattern
        if pattern is None:
            return source
        hidden = {index for found in pattern.finditer(source) for index in range(*found.span())}
        kept = [index for index, char in enumerate(source) if char not in _INLINE_MARKS]
        plain = "".join(source[index] for index in kept)
        hidden.update(
            index for found in pattern.finditer(plain) for index in kept[found.start() : found.end()]
        )
        if not hidden:
            return source
        return "".join(MASKED_IN_MARKDOWN if index in hidden else char for index, char in enumerate(source))


class Moderator:
    def __init__(
        self,
        settings: Settings,
        client: openai.OpenAI | None = None,
        words: Callable[[], list[str] | None] | None = None,
    ) -> None:
        """`words`: where to read the sensitive words set at run time (the console's override; None
        there: SENSITIVE_WORDS and its file)."""
        self.configured = WordList(tuple(load_words(settings)))
        self.override = words
        self._current = self.configured
        self.client = client if settings.moderation else None

    def current(self) -> WordList:
        """The list in force now, for a whole answer (one read of the override, not one per page)."""
        return self._words()

    def _words(self) -> WordList:
        """The list in force: the override when set (compiled again only when it changed)."""
        found = self.override() if self.override is not None else None
        if found is None:
            return self.configured
        if tuple(found) != self._current.words:
            self._current = WordList(tuple(found))
        return self._current

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._words().pattern

    @property
    def longest(self) -> int:
        """The longest word, in characters (pages are never cut inside a word of this length)."""
        return self._words().longest

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def refuses(self, question: str) -> bool:
        """True when the question has a sensitive word or the moderation endpoint flags it."""
        return self.refused([question])[0]

    def refused(self, questions: list[str]) -> list[bool]:
        """`refuses` for each question, with one call to the moderation endpoint for all of those the
        sensitive words let through (a question waits for it before its LLM request)."""
        pattern = self.pattern
        verdicts = [pattern is not None and pattern.search(question) is not None for question in questions]
        asked = [index for index, refused in enumerate(verdicts) if not refused]
        if self.client is None or not asked:
            return verdicts
        try:
            inputs = [questions[index] for index in asked]
            result = self.client.moderations.create(input=inputs[0] if len(inputs) == 1 else inputs)
        except openai.OpenAIError as exc:  # fail open: an outage of moderation must not stop answers
            log.warning("moderation unavailable, question allowed: %s", exc)
            return verdicts
        for index, item in zip(asked, result.results, strict=False):  # one result per input, in order
            verdicts[index] = bool(item.flagged)
        return verdicts

    def mask(self, text: str) -> str:
        return self._words().mask(text)

    def mask_markdown(self, source: str) -> str:
        return self._words().mask_markdown(source)
