"""Cutting a document into passages of a few hundred characters, at paragraph ends when it can, at
sentence ends when a paragraph is too long, inside a sentence only when one sentence is longer than
a passage (at a comma if there is one). Nothing is lost or repeated; each passage keeps the heading
it falls under.

The size (CHUNK_CHARS) was chosen with bench/retrieval.py: see the README's benchmarks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.knowledge.documents import Block

#: a passage aims at this many characters
CHUNK_CHARS = 300
#: a paragraph longer than the passage size is cut into sentences; a sentence longer than this, at commas
SENTENCE_MAX = 300

#: a sentence: up to its end mark (with closing quotes and brackets), or an English full stop before a space
_SENTENCE = re.compile(r".+?(?:[。！？!?；;…]+[”’」』）)\]]*|\.(?=\s)|$)", re.S)
_SOFT_BREAKS = "，,、：:"


@dataclass(frozen=True)
class Chunk:
    text: str
    section: str


def chunk(blocks: list[Block], size: int = CHUNK_CHARS) -> list[Chunk]:
    """The passages of a document's blocks, in order."""
    chunks: list[Chunk] = []
    parts: list[str] = []
    length, section, start_section = 0, "", ""

    def flush() -> None:
        nonlocal parts, length
        if parts:
            chunks.append(Chunk("\n".join(parts), start_section))
        parts, length = [], 0

    for block in blocks:
        text = " ".join(block.text.split()) if block.heading else block.text.strip()
        if not text:
            continue
        if block.heading:
            flush()  # a new section starts a new passage
            section = text[:80]
            continue
        for piece in _pieces(text, size):
            if parts and length + len(piece) > size:
                flush()
            if not parts:
                start_section = section
            parts.append(piece)
            length += len(piece)
    flush()
    return chunks


def _pieces(paragraph: str, size: int) -> list[str]:
    """A paragraph that fits whole, else its sentences grouped up to `size` characters."""
    if len(paragraph) <= size:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for sentence in _sentences(paragraph, min(size, SENTENCE_MAX)):
        if current and len(current) + len(sentence) > size:
            pieces.append(current)
            current = ""
        current += sentence
    if current:
        pieces.append(current)
    return pieces


def _sentences(text: str, limit: int) -> list[str]:
    found = [match.group(0) for match in _SENTENCE.finditer(text)]
    return [part for sentence in found for part in _hard_split(sentence, limit)]


def _hard_split(sentence: str, limit: int) -> list[str]:
    """A sentence longer than `limit`, cut after the last comma of each window (else at the limit)."""
    parts: list[str] = []
    while len(sentence) > limit:
        window = sentence[:limit]
        cut = max(window.rfind(mark) for mark in _SOFT_BREAKS)
        end = cut + 1 if cut >= limit // 2 else limit
        parts.append(sentence[:end])
        sentence = sentence[end:]
    if sentence:
        parts.append(sentence)
    return parts
