"""Byte-safe pages of a (possibly still growing) answer.

A page is cut only once enough text follows it, and where it is cut depends only on the text
inside its own window, so the pages of a streamed answer never change once they exist: page 1
can go out while the model is still writing page 2, and nothing is lost or repeated.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot import texts
from bot.media.moderation import MASKED
from bot.replies import QUESTION_PREVIEW_CHARS, truncate_utf8, utf8_len

#: cut after the last of these found in the second half of a page's window, best first
_BREAKS = ("\n", "。！？!?；;", "，,、 ")
#: code points that join the one before them into one symbol
_JOINS_BEFORE = frozenset("\u200d\ufe0f\u20e3") | {chr(code) for code in range(0x1F3FB, 0x1F400)}
#: regional indicators: a flag is two of them
_FLAG_LETTERS = frozenset(chr(code) for code in range(0x1F1E6, 0x1F200))
#: a web address: its `?`, `!` and `;` are no place to cut (it runs to a space or a CJK character)
_URL = re.compile(r"(?:https?|ftp)://[^\s\u2e80-\u9fff\u3000-\u303f\uff00-\uffef]+")


def decoration_reserve() -> int:
    """Bytes every page keeps free for the notes that may be added when it is delivered."""
    widest = "x" * 4  # a quoted character takes at most 4 UTF-8 bytes (an emoji; a CJK character 3)
    prefix = texts.LATE_ANSWER_PREFIX.format(question=widest * (QUESTION_PREVIEW_CHARS + 1))
    notes = (prefix, texts.QUEUED_NOTE, texts.REGENERATED_NOTE, texts.MORE_HINT)
    return sum(utf8_len(note) for note in notes)


def page_end(text: str, budget: int) -> int:
    """Where (in characters) a page of at most `budget` bytes taken from `text` ends: after the last
    break of the best kind in the second half of its window, never inside a web address; without one,
    before an address the window ends in, or at the window's end. Only the window decides."""
    window = truncate_utf8(text, budget)
    if len(window) == len(text):
        return len(text)
    half = len(window) // 2
    addresses = [match.span() for match in _URL.finditer(window)]
    for breaks in _BREAKS:
        position = max(window.rfind(mark) for mark in breaks)
        while position >= half and any(start <= position < end for start, end in addresses):
            position = max(window.rfind(mark, 0, position) for mark in breaks)
        if position >= half:
            return position + 1
    last = addresses[-1] if addresses else None
    if last is not None and last[1] == len(window) and last[0] >= half:
        return last[0]  # the address may go on past the window: it starts the next page whole
    return _symbol_start(text, max(len(window), 1), half)


def _symbol_start(text: str, end: int, earliest: int) -> int:
    """`end`, moved back (not before `earliest`) so that it does not split one symbol of several code
    points: an emoji's ZWJ sequence, its variation selector or skin tone, a keycap, a flag's pair.
    Hand-written: Python has no grapheme clusters, and these are the ones chat text has."""
    while end > earliest and end < len(text):
        before, after = text[end - 1], text[end]
        flags = 0
        while end - flags > 0 and text[end - flags - 1] in _FLAG_LETTERS:
            flags += 1
        split_flag = after in _FLAG_LETTERS and flags % 2 == 1
        if before != "\u200d" and after not in _JOINS_BEFORE and not split_flag:
            break
        end -= 1
    return end


class PageSplitter:
    """Turns a stream of text chunks into finished pages of at most `budget` bytes each."""

    def __init__(self, budget: int, transform: Callable[[str], str] | None = None) -> None:
        if budget < 16:
            raise ValueError("page budget too small")
        self.budget = budget
        self.rest = ""
        self.pages = 0
        #: applied to the unpublished text before pages are cut (e.g. masking sensitive words)
        self.transform = transform
        #: characters kept back from every cut, so that a word the transform must see whole is not split
        self.holdback = 0

    def feed(self, chunk: str) -> list[str]:
        """Add generated text; return the pages it completed (usually none)."""
        self.rest += chunk
        if self.transform is not None:
            self.rest = self.transform(self.rest)
        finished: list[str] = []
        while utf8_len(self.rest[: max(len(self.rest) - self.holdback, 0)]) > self.budget:
            end = page_end(self.rest, self.budget)
            finished.append(self.rest[:end])
            self.rest = self.rest[end:]
        self.pages += len(finished)
        return finished

    def finish(self) -> list[str]:
        """The answer is complete: return its last pages (the text held back may fill more than one)."""
        if self.transform is not None:
            self.rest = self.transform(self.rest)
        last: list[str] = []
        while utf8_len(self.rest) > self.budget:
            end = page_end(self.rest, self.budget)
            last.append(self.rest[:end])
            self.rest = self.rest[end:]
        if self.rest.strip() or (self.pages == 0 and not last):
            last.append(self.rest)
        self.rest = ""
        self.pages += len(last)
        return last


def with_note(pages: list[str], note: str, budget: int) -> tuple[list[str], str]:
    """`pages` with `note` at the end of the last one when it fits there (the note then returned
    empty); else the pages unchanged and the note, for a page of its own. The note of an answer cut
    short then comes with its text, instead of behind a 继续 that brings only the note."""
    if not pages or not note:
        return pages, note
    last = pages[-1].rstrip() + "\n\n" + note
    if utf8_len(last) > budget:
        return pages, note
    return [*pages[:-1], last], ""


def split_pages(text: str, budget: int) -> list[str]:
    """All pages of a finished text."""
    splitter = PageSplitter(budget)
    return splitter.feed(text) + splitter.finish()


class Resume:
    """A rewritten answer after its first run died: the pages the user already read (`seen`) are not
    sent again when the new run starts with the same text; when it does not, the new text follows a
    note saying that the answer was written again. A masked character of `seen` (a sensitive word's
    MASKED) matches any character: the new run's text is compared before its words are masked."""

    def __init__(self, seen: str = "", note: str = "") -> None:
        self.seen = seen
        self.note = note
        self.buffer: str | None = "" if seen else None
        self.checked = 0  # characters of the buffer known to repeat `seen`

    def feed(self, piece: str) -> str:
        """The part of `piece` (with what was held back) that is new to the user."""
        if self.buffer is None:
            return piece
        self.buffer += piece
        if len(self.buffer) < len(self.seen) and self._repeats(self.buffer):
            return ""  # still repeating what the user has: hold it back
        return self._release()

    def finish(self) -> str:
        return "" if self.buffer is None else self._release()

    def abandon(self) -> str:
        """The run stops before its end (it failed): what it still holds back, unless that only repeats
        what the user has read (then the failure's note follows the pages they have)."""
        if self.buffer is not None and len(self.buffer) <= len(self.seen) and self._repeats(self.buffer):
            self.buffer = None
            return ""
        return self.finish()

    def _release(self) -> str:
        text, self.buffer = self.buffer or "", None
        whole = len(text) >= len(self.seen) and self._repeats(text)
        return text[len(self.seen) :] if whole else self.note + text

    def _repeats(self, text: str) -> bool:
        """`text` repeats `seen` as far as both go (its characters checked before are not checked again)."""
        end = min(len(text), len(self.seen))
        start = min(self.checked, end)
        if text[start:end] != self.seen[start:end] and not all(
            new == old or old == MASKED
            for new, old in zip(text[start:end], self.seen[start:end], strict=True)
        ):
            return False
        self.checked = end
        return True
