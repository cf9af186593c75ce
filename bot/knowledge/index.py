"""Each process's in-memory index of the knowledge base, and ranking a question against it.

The knowledge base lives in Redis (bot/store/knowledge.py); every process keeps a Snapshot — the BM25
model (bm25s, over jieba tokens) and the passages' vectors — built for one version of it. A question
costs one GET of the version; when it moved (a document added, replaced or removed by any process),
the process reloads only the documents whose revision changed and rebuilds the BM25 model over all
of them. A small index (its last build took under BACKGROUND_AFTER) is rebuilt before the question is
answered; a large one (about 1–2 s at 10,000 passages) in a background thread, while questions are
answered from the previous snapshot with the removed and replaced documents hidden: a removed document
is never cited after its removal, and a sync of hundreds of articles never makes a question wait.
A document whose words were stored by an older tokenizer (bot/knowledge/tokens.py TOKENIZER) is
tokenized again from its text when loaded, and stored so, once, for every process (`_retokenize`).

Ranking: BM25 alone, dense (cosine) alone, or both fused by reciprocal rank fusion. Whether a
passage is relevant at all is a separate, calibrated test (`relevance`): the share of what the
question is about that the passage (with its title and heading) contains — the question's words,
each weighted by its rarity in Chinese at large (bot/knowledge/tokens.py). Unlike a BM25 score, which
is tiny in a knowledge base of one short document and large in one of thousands, it means the same
at any size (bench/retrieval.py calibrates KB_MIN_RELEVANCE with it).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import redis

from bot.knowledge.documents import Passage, indexed_text
from bot.knowledge.tokens import TOKENIZER, tokenize, weight, words
from bot.lazy import LazyModule
from bot.store.knowledge import DocumentRecord, KnowledgeStore

if TYPE_CHECKING:
    import bm25s
    import numpy as np
else:  # imported on first use: a process that never searches never loads them (bot/lazy.py)
    bm25s, np = LazyModule("bm25s"), LazyModule("numpy")

log = logging.getLogger(__name__)

Mode = Literal["bm25", "dense", "hybrid"]
#: candidates taken from each ranking before fusion and the relevance test
CANDIDATES = 20
#: reciprocal rank fusion's constant (Cormack et al.'s 60)
RRF_K = 60
#: BM25's parameters (bm25s's Lucene variant)
K1, B = 1.2, 0.75
#: when CANDIDATES passages or more share words with a question (its words are common in a large
#: knowledge base), a passage is relevant only if its BM25 score stands out from theirs: at least this
#: many times their median. Chance matches of common words do not; an answer does (bench/retrieval.py)
STANDOUT = 2.0
#: an index whose last build took longer than this (seconds) is rebuilt in the background
BACKGROUND_AFTER = 0.2


@dataclass
class _Doc:
    """A document as this process loaded it."""

    record: DocumentRecord
    passages: list[Passage]
    token_ids: list[np.ndarray]
    vectors: np.ndarray | None


@dataclass(frozen=True)
class Hit:
    passage: Passage
    #: the share of what the question is about (its words, weighted) that the passage holds (0–1)
    relevance: float
    bm25: float
    #: cosine similarity to the question (None without vectors)
    similarity: float | None
    #: the rank score: BM25 (bm25), the similarity (dense), or the fused reciprocal ranks (hybrid)
    score: float
    relevant: bool


@dataclass(frozen=True)
class Snapshot:
    version: int
    passages: list[Passage] = field(default_factory=list)
    token_ids: list[np.ndarray] = field(default_factory=list)
    bm25: bm25s.BM25 | None = None
    vocab: dict[str, int] = field(default_factory=dict)
    vocab_size: int = 0
    #: the vectors stored for the configured model; row r belongs to passage vector_rows[r]; both rows
    #: fields are set whenever `vectors` is (None by default: an empty snapshot needs no numpy)
    vectors: np.ndarray | None = None
    vector_rows: np.ndarray | None = None
    #: per passage: its row in `vectors`, or -1
    vector_of: np.ndarray | None = None
    #: document id → revision, as built
    revs: dict[str, str] = field(default_factory=dict)
    #: per passage: True when its document was removed or replaced since the build (never used)
    hidden: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return not self.passages

    @property
    def has_vectors(self) -> bool:
        return self.vectors is not None and len(self.vectors) > 0

    def hiding(self, version: int, stale: set[str]) -> Snapshot:
        """This snapshot standing for a newer `version`, without the documents `stale` since its build."""
        hidden = np.fromiter((p.doc_id in stale for p in self.passages), dtype=bool, count=len(self.passages))
        return replace(self, version=version, hidden=hidden)

    def search(
        self,
        question: str,
        query_vector: np.ndarray | None = None,
        *,
        mode: Mode = "hybrid",
        min_relevance: float,
        min_similarity: float,
        limit: int = CANDIDATES,
    ) -> list[Hit]:
        """The best passages for `question`, best first, each marked relevant or not."""
        if self.empty:
            return []
        lexical = self._bm25(self._ids(tokenize(question))) if mode != "dense" else {}
        about = words(question)
        ids = np.asarray([self.vocab.get(w, -1) for w in about], dtype=np.int32)
        ids[ids >= self.vocab_size] = -1  # a word only newer documents have
        weights = np.asarray([weight(w) for w in about], dtype=np.float32)
        total = float(weights.sum())
        similarities = self._similarities(query_vector) if mode != "bm25" else None
        rows = self.vector_rows
        dense = _candidates(similarities, rows) if similarities is not None and rows is not None else {}
        ranked = _rank(lexical, dense, mode)
        crowded = len(lexical) >= CANDIDATES  # the question's words are everywhere: answers stand out
        floor = STANDOUT * float(np.median(list(lexical.values()))) if crowded else 0.0
        hits = []
        order = sorted(ranked, key=lambda i: -ranked[i])
        if self.hidden is not None:
            order = [index for index in order if not self.hidden[index]]
        for index in order[:limit]:
            found = np.isin(ids, self.token_ids[index])
            relevance = float(weights[found].sum() / total) if total > 0 else 0.0
            similarity = self._similarity(index, similarities)
            lexical_match = relevance >= min_relevance and lexical.get(index, 0.0) >= floor
            passes = lexical_match or (similarity is not None and similarity >= min_similarity)
            passage = self.passages[index]
            hits.append(Hit(passage, relevance, lexical.get(index, 0.0), similarity, ranked[index], passes))
        return hits

    def _ids(self, tokens: list[str]) -> np.ndarray:
        known = {i for t in tokens if (i := self.vocab.get(t)) is not None and i < self.vocab_size}
        return np.asarray(sorted(known), dtype=np.int32)

    def _bm25(self, ids: np.ndarray) -> dict[int, float]:
        if self.bm25 is None or not len(ids):
            return {}
        scores = self.bm25.get_scores_from_ids(ids)
        if self.hidden is not None:
            scores[self.hidden] = 0
        return {int(i): float(scores[i]) for i in _top(scores, CANDIDATES) if scores[i] > 0}

    def _similarities(self, query: np.ndarray | None) -> np.ndarray | None:
        """Cosine similarity of the question to each vector row (None without comparable vectors)."""
        if query is None or self.vectors is None or self.vectors.shape[1] != len(query):
            return None
        # einsum, not `@`: a BLAS call wakes its thread pool, which costs up to ~20 ms on a busy 2-core
        # machine (measured); this is ~0.5 ms at 10,000 passages, without threads
        similarities = np.einsum("ij,j->i", self.vectors, query.astype(np.float32, copy=False))
        if self.hidden is not None and self.vector_rows is not None:
            similarities[self.hidden[self.vector_rows]] = -2.0  # below any cosine
        return similarities

    def _similarity(self, index: int, similarities: np.ndarray | None) -> float | None:
        if similarities is None or self.vector_of is None:
            return None
        row = int(self.vector_of[index])
        return None if row < 0 else float(similarities[row])


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _candidates(similarities: np.ndarray, rows: np.ndarray) -> dict[int, float]:
    return {int(rows[i]): float(similarities[i]) for i in _top(similarities, CANDIDATES)}


def _rank(lexical: dict[int, float], dense: dict[int, float], mode: Mode) -> dict[int, float]:
    """Each candidate's rank score: BM25's, the similarity, or both fused (either alone when the
    other has nothing, e.g. the embedding server failed)."""
    if mode == "bm25" or (mode == "hybrid" and not dense):
        return lexical
    if mode == "dense" or not lexical:
        return dense
    fused: dict[int, float] = {}
    for ranking in (lexical, dense):
        for rank, index in enumerate(sorted(ranking, key=lambda i: -ranking[i]), 1):
            fused[index] = fused.get(index, 0.0) + 1 / (RRF_K + rank)
    return fused


class IndexCache:
    """This process's snapshot of the knowledge base, rebuilt when the version in Redis moves."""

    def __init__(self, store: KnowledgeStore, embedding_model: str) -> None:
        self.store = store
        self.embedding_model = embedding_model
        #: guards the current snapshot; `_build_lock` guards the documents and words of the next one
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._building = False
        self.background_after = BACKGROUND_AFTER
        self._docs: dict[str, _Doc] = {}
        #: word → id for every word this process has seen (ids only grow, so old snapshots stay valid)
        self._vocab: dict[str, int] = {}
        self.rebuilds = 0
        self.last_rebuild_seconds = 0.0

    def snapshot(self) -> Snapshot:
        version = self.store.version()
        current = self._snapshot
        if current is not None and current.version == version and (current.hidden is None or self._building):
            return current
        with self._lock:
            current = self._snapshot
            if (
                current is not None
                and current.version == version
                and (current.hidden is None or self._building)
            ):
                return current  # another thread got here first
            if current is None or (
                current.version != version and self.last_rebuild_seconds < self.background_after
            ):
                with self._build_lock:
                    self._snapshot = current = self._rebuild(version)
                return current
            if current.version != version:
                records = self.store.documents()
                stale = {d for d, rev in current.revs.items() if getattr(records.get(d), "rev", "") != rev}
                self._snapshot = current = current.hiding(version, stale)
            if not self._building:  # (a build that failed is tried again)
                self._building = True
                threading.Thread(target=self._build_in_background, name="kb-index", daemon=True).start()
            return current

    def _build_in_background(self) -> None:
        """Build snapshots until one is as new as the knowledge base."""
        try:
            while True:
                version = self.store.version()
                with self._build_lock:
                    fresh = self._rebuild(version)
                with self._lock:
                    current = self._snapshot
                    if current is None or fresh.version >= current.version:
                        self._snapshot = current = fresh
                    if current is fresh and self.store.version() == fresh.version:
                        return
        except Exception:  # Redis blinked: the next question starts another build
            log.exception("knowledge base: the index was not rebuilt")
        finally:
            with self._lock:
                self._building = False

    def _rebuild(self, version: int) -> Snapshot:
        started = time.perf_counter()
        records = self.store.documents()
        for gone in set(self._docs) - set(records):
            del self._docs[gone]
        changed = [doc_id for doc_id, record in records.items() if self._stale(doc_id, record)]
        self._load(changed, records)
        snapshot = self._build(version)
        self.rebuilds += 1
        self.last_rebuild_seconds = time.perf_counter() - started
        log.info(
            "knowledge base v%s: %s documents, %s passages (%s reloaded) in %.0f ms",
            version, len(self._docs), len(snapshot.passages), len(changed), self.last_rebuild_seconds * 1000,
        )  # fmt: skip
        return snapshot

    def _stale(self, doc_id: str, record: DocumentRecord) -> bool:
        known = self._docs.get(doc_id)
        return known is None or known.record.rev != record.rev

    def _load(self, doc_ids: list[str], records: dict[str, DocumentRecord]) -> None:
        dense = bool(self.embedding_model)
        wanted = [d for d in doc_ids if records[d].embedding == self.embedding_model] if dense else []
        vectors = dict(zip(wanted, self.store.vectors(wanted), strict=True))
        for doc_id, raw in zip(doc_ids, self.store.passages(doc_ids), strict=True):
            if raw is None:  # removed since the records were read: the next version drops it
                self._docs.pop(doc_id, None)
                continue
            self._docs[doc_id] = self._parse(records[doc_id], raw, vectors.get(doc_id))

    def _parse(self, record: DocumentRecord, raw: str, vectors: str | None) -> _Doc:
        items = json.loads(raw)
        if record.tokenizer != TOKENIZER:
            items = self._retokenize(record, items)
        passages, token_ids = [], []
        for number, item in enumerate(items):
            words = item["tokens"].split()
            passages.append(
                Passage(
                    record.id, number, item["text"], record.title, item.get("section", ""),
                    record.url, record.source, record.name,
                )
            )  # fmt: skip
            vocab = self._vocab  # a new word gets the next id (the size before it is added)
            token_ids.append(np.asarray([vocab.setdefault(w, len(vocab)) for w in words], dtype=np.int32))
        return _Doc(record, passages, token_ids, decode_vectors(vectors, len(passages)))

    def _retokenize(self, record: DocumentRecord, items: list[dict[str, str]]) -> list[dict[str, str]]:
        """A document stored with another tokenizer's words (before an upgrade): its passages' words
        made again from their text, as a question's are, and stored for the other processes."""
        for item in items:
            item["tokens"] = " ".join(
                tokenize(indexed_text(record.title, item.get("section", ""), item["text"]))
            )
        try:
            stored = self.store.retokenized(
                replace(record, tokenizer=TOKENIZER), json.dumps(items, ensure_ascii=False)
            )
        except redis.RedisError as exc:  # the next process to load it tries again
            log.warning("knowledge base: %s tokenized again, not stored (%s)", record.id, exc)
        else:
            log.info(
                "knowledge base: %s tokenized again (tokenizer %s)%s",
                record.id,
                TOKENIZER,
                "" if stored else ", not stored: changed meanwhile",
            )
        return items

    def _build(self, version: int) -> Snapshot:
        docs = [self._docs[doc_id] for doc_id in sorted(self._docs)]
        passages = [passage for doc in docs for passage in doc.passages]
        token_ids = [ids for doc in docs for ids in doc.token_ids]
        if not passages:
            return Snapshot(version)
        size = len(self._vocab)
        model = bm25s.BM25(k1=K1, b=B)
        model.index(([ids.tolist() for ids in token_ids], self._vocab), show_progress=False)
        vectors, rows = _stack_vectors(docs)
        vector_of = np.full(len(passages), -1, dtype=np.int64)
        vector_of[rows] = np.arange(len(rows))
        unique = [np.unique(ids) for ids in token_ids]
        revs = {doc.record.id: doc.record.rev for doc in docs}
        return Snapshot(version, passages, unique, model, self._vocab, size, vectors, rows, vector_of, revs)


def _stack_vectors(docs: list[_Doc]) -> tuple[np.ndarray | None, np.ndarray]:
    blocks: list[np.ndarray] = []
    rows: list[int] = []
    start = 0
    for doc in docs:
        count = len(doc.passages)
        if doc.vectors is not None:
            blocks.append(doc.vectors)
            rows.extend(range(start, start + count))
        start += count
    if not blocks or len({block.shape[1] for block in blocks}) != 1:
        return None, np.zeros(0, dtype=np.int64)
    return np.vstack(blocks), np.asarray(rows, dtype=np.int64)


def encode_vectors(matrix: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).decode("ascii")


def decode_vectors(raw: str | None, rows: int) -> np.ndarray | None:
    if not raw or rows == 0:
        return None
    flat = np.frombuffer(base64.b64decode(raw), dtype=np.float32)
    if len(flat) % rows:
        log.warning("knowledge base: vectors of the wrong size ignored")
        return None
    return flat.reshape(rows, -1)
