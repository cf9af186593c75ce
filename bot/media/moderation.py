"""Optional moderation, off by default: a sensitive-word list (questions refused, answers masked)
and OpenAI's moderation endpoint for questions (MODERATION=true)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import openai

from bot.config import Settings

log = logging.getLogger(__name__)


def load_words(settings: Settings) -> list[str]:
    words = list(settings.sensitive_words)
    if settings.sensitive_words_file:
        lines = Path(settings.sensitive_words_file).read_text(encoding="utf-8").splitlines()
        words += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return sorted(set(words), key=len, reverse=True)


class Moderator:
    def __init__(self, settings: Settings, client: openai.OpenAI | None = None) -> None:
        words = load_words(settings)
        #: the longest word, in characters (pages are never cut inside a word of this length)
        self.longest = max(map(len, words), default=0)
        self.pattern = re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None
        self.client = client if settings.moderation else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def refuses(self, question: str) -> bool:
        """True when the question has a sensitive word or the moderation endpoint flags it."""
        if self.pattern is not None and self.pattern.search(question):
            return True
        if self.client is None:
            return False
        try:
            result = self.client.moderations.create(input=question)
        except openai.OpenAIError as exc:  # fail open: an outage of moderation must not stop answers
            log.warning("moderation unavailable, question allowed: %s", exc)
            return False
        return any(item.flagged for item in result.results)

    def mask(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(lambda found: "*" * len(found.group(0)), text)
