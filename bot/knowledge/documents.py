"""What a document is once read, whatever it came from: a title, an optional link, and its text as
blocks (paragraphs and headings, in order); and the passages it is cut into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    text: str
    heading: bool = False


@dataclass(frozen=True)
class Document:
    title: str
    blocks: list[Block]
    #: "file" or "wechat"
    source: str
    #: what identifies it at its source (a file's name; "freepublish:ARTICLE_ID:0" for an article)
    key: str
    url: str = ""
    #: the file's name, or the article's author
    name: str = ""
    #: what changes when the document does ("" : a digest of its text)
    version: str = ""

    @property
    def id(self) -> str:
        """Short and stable: the same file (by name) or article always gets the same id."""
        return doc_id(self.source, self.key)

    @property
    def text(self) -> str:
        return "\n".join(block.text for block in self.blocks)

    def digest(self) -> str:
        return hashlib.sha256(f"{self.title}\n{self.url}\n{self.text}".encode()).hexdigest()[:16]


def indexed_text(title: str, section: str, text: str) -> str:
    """What a passage is found by: its document's title and its heading count as its words too."""
    return "\n".join(part for part in (title, section, text) if part)


def doc_id(source: str, key: str) -> str:
    return hashlib.sha1(f"{source}:{key}".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Passage:
    """A few hundred characters of a document, with what is needed to cite it."""

    doc_id: str
    number: int
    text: str
    title: str
    section: str = ""
    url: str = ""
    source: str = "file"
    name: str = ""
    tokens: list[str] = field(default_factory=list, compare=False, repr=False)
