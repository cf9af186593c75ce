"""The knowledge base as the rest of the bot sees it: add, replace and remove documents; rank the
passages for a question; and ground a question — the passages and the instruction that go into the
prompt, and the sources the bot adds after the answer.

One per process (bot/runtime.py). With an empty knowledge base a question costs one GET (the
version) and nothing else: the prompt is exactly what it would be without this module.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bot import texts
from bot.config import Settings
from bot.knowledge.chunking import CHUNK_CHARS, chunk
from bot.knowledge.documents import Document, Passage, indexed_text
from bot.knowledge.embeddings import Embedder, EmbeddingError
from bot.knowledge.formats import read_file
from bot.knowledge.index import CANDIDATES, Hit, IndexCache, Mode, encode_vectors
from bot.knowledge.tokens import TOKENIZER, tokenize
from bot.store.knowledge import DocumentRecord, KnowledgeStore
from bot.store.pages import Source

log = logging.getLogger(__name__)

#: documents listed in the sources after an answer, at most: those of the grounding, and as many more
#: found by the model's searches (bot/tools/knowledge.py)
MAX_SOURCES = 3
#: a title in the sources or a prompt is cut to this many characters
TITLE_CHARS = 60
#: the element the passages are wrapped in (texts.KB_PASSAGE): its opening and closing tags
_OPENING = texts.KB_PASSAGE.split(" ", 1)[0]
_DELIMITERS = (_OPENING, "</" + _OPENING[1:])


@dataclass(frozen=True)
class Grounded:
    """A question ready for the prompt: the system prompt and the user's message to send, and the
    documents of the passages given (none when no passage was relevant: then nothing changes)."""

    system: str
    question: str
    sources: tuple[Source, ...] = ()
    hits: tuple[Hit, ...] = ()


@dataclass(frozen=True)
class Added:
    record: DocumentRecord
    replaced: bool


class KnowledgeBase:
    def __init__(self, store: KnowledgeStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.index = IndexCache(store, settings.embedding_model)
        #: the passage size documents are cut into (bench/retrieval.py compares sizes)
        self.chunk_chars = CHUNK_CHARS

    @cached_property
    def embedder(self) -> Embedder | None:
        return Embedder(self.settings) if self.settings.embedding_model else None

    def close(self) -> None:
        embedder = self.__dict__.get("embedder")  # built on first use: close only what exists
        if embedder is not None:
            embedder.close()

    # --- documents ------------------------------------------------------------------------
    def add_file(self, path: Path) -> Added:
        """Read and index a file (UnreadableFile, EmbeddingError); the same file name replaces it."""
        return self.add(read_file(path))

    def add(self, document: Document) -> Added:
        """Index a document, replacing the one with the same source and key (EmbeddingError)."""
        previous = self.store.document(document.id)
        title = _one_line(document.title) or document.key
        chunks = chunk(document.blocks, self.chunk_chars)
        passages = [
            {
                "text": c.text,
                "section": c.section,
                "tokens": " ".join(tokenize(indexed_text(title, c.section, c.text))),
            }
            for c in chunks
        ]
        vectors = None
        if self.embedder is not None and chunks:
            matrix = self.embedder.embed([indexed_text(title, c.section, c.text) for c in chunks])
            vectors = encode_vectors(matrix)
        now = time.time()
        record = DocumentRecord(
            id=document.id,
            title=title,
            source=document.source,
            key=document.key,
            version=document.version or document.digest(),
            chunks=len(chunks),
            added=previous.added if previous else now,
            updated=now,
            url=_link(document.url),
            name=document.name,
            embedding=self.settings.embedding_model if vectors is not None else "",
            rev=uuid.uuid4().hex,
            tokenizer=TOKENIZER,
        )
        self.store.put(record, json.dumps(passages, ensure_ascii=False), vectors)
        return Added(record, replaced=previous is not None)

    def remove(self, doc_id: str) -> DocumentRecord | None:
        found = self.store.document(doc_id)
        if found is not None and self.store.remove(doc_id):
            return found
        return None

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.store.documents().values(), key=lambda record: (record.added, record.id))

    # --- questions ------------------------------------------------------------------------
    def search(
        self,
        question: str,
        *,
        mode: Mode = "hybrid",
        limit: int = CANDIDATES,
        min_relevance: float | None = None,
        embed_timeout: float | None = None,
    ) -> list[Hit]:
        """Every candidate passage, best first, marked relevant (would be used) or not (at KB_MIN_RELEVANCE,
        or `min_relevance`); the question's embedding waited for at most `embed_timeout` seconds if given
        (else EMBEDDING_TIMEOUT)."""
        snapshot = self.index.snapshot()
        if snapshot.empty:
            return []
        query_vector = None
        if mode != "bm25" and snapshot.has_vectors and self.embedder is not None:
            try:
                query_vector = self.embedder.embed_query(question, timeout=embed_timeout)
            except EmbeddingError as exc:
                log.warning("knowledge base: question not embedded (%s); BM25 alone", exc)
        return snapshot.search(
            question,
            query_vector,
            mode=mode,
            min_relevance=self.settings.kb_min_relevance if min_relevance is None else min_relevance,
            min_similarity=self.settings.kb_min_similarity,
            limit=limit,
        )

    def retrieve(
        self, question: str, top_k: int | None = None, embed_timeout: float | None = None
    ) -> list[Hit]:
        """The passages to give the model for `question` (none when none is relevant): at most `top_k`
        (else KB_TOP_K). The knowledge-base tool (bot/tools/knowledge.py) searches through here too."""
        hits = self.search(question, embed_timeout=embed_timeout)
        return [hit for hit in hits if hit.relevant][: top_k or self.settings.kb_top_k]

    def has_documents(self) -> bool:
        """Whether there is anything to search (one GET of the version, as a question costs)."""
        return not self.index.snapshot().empty

    def ground(self, system: str, question: str, asked: str | None = None) -> Grounded:
        """The question with its passages and the instruction to answer from them, or unchanged. The
        passages are found for `question`; `asked`, when given, is the user's message that follows them
        (the question with the questions sent just before it), and is the message when none is found."""
        asked = question if asked is None else asked
        try:
            hits = self.retrieve(question)
        except Exception as exc:  # a bug in retrieval never costs the answer: it goes without the KB
            log.exception("knowledge base: retrieval failed (%s); answering without it", exc)
            hits = []
        if not hits:
            return Grounded(system, asked)
        passages = "\n".join(
            texts.KB_PASSAGE.format(n=n, title=_quoted(hit.passage.title), text=_data(_shown(hit.passage)))
            for n, hit in enumerate(hits, 1)
        )
        instruction = f"{system}\n\n{texts.KB_SYSTEM}" if system else texts.KB_SYSTEM
        grounded = texts.KB_CONTEXT.format(passages=passages, question=asked)
        return Grounded(instruction, grounded, sources_of([hit.passage for hit in hits]), tuple(hits))


def sources_of(passages: list[Passage]) -> tuple[Source, ...]:
    """The documents of the passages, in the order given, each once, at most MAX_SOURCES: its title
    and its link ("" for a file)."""
    found: list[Source] = []
    for passage in passages:
        source = Source(_one_line(passage.title)[:TITLE_CHARS] or passage.name, passage.url)
        if source not in found:
            found.append(source)
    return tuple(found[:MAX_SOURCES])


def listed_sources(sources: Sequence[Source], found: Sequence[Source] = ()) -> list[Source]:
    """An answer's sources: the grounding's `sources` first, then those the model `found` with the search
    tool that are not among them (each at most MAX_SOURCES)."""
    listed = list(sources[:MAX_SOURCES])
    return listed + [source for source in dict.fromkeys(found) if source not in listed][:MAX_SOURCES]


def sources_footer(sources: Sequence[Source], found: Sequence[Source] = ()) -> str:
    """「来源：」 then each source (`listed_sources`): its title with its link, or its title alone.
    Written by the bot after the model's answer (bot/answering/generation.py), never by the model."""
    listed = listed_sources(sources, found)
    lines = [
        texts.KB_SOURCE_LINK.format(n=n, title=source.title, url=source.url)
        if _link(source.url)
        else texts.KB_SOURCE_TITLE.format(n=n, title=source.title)
        for n, source in enumerate(listed, 1)
    ]
    return texts.KB_SOURCES_HEAD + "".join(lines) if lines else ""


def _shown(passage: Passage) -> str:
    """A passage as the model reads it: under its heading, if it has one."""
    return f"{passage.section}\n{passage.text}" if passage.section else passage.text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _link(url: str) -> str:
    """Only a plain http(s) address is ever shown as a link."""
    url = url.strip()
    return url if url.startswith(("https://", "http://")) and not any(c.isspace() for c in url) else ""


def _data(text: str) -> str:
    """A passage cannot close its <资料> element early (nor open another): its delimiters are defused."""
    for delimiter in _DELIMITERS:
        text = text.replace(delimiter, delimiter.replace("<", "＜"))
    return text


def _quoted(title: str) -> str:
    return _data(_one_line(title)[:TITLE_CHARS]).replace('"', "”")
