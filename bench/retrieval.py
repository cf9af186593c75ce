"""`make bench-retrieval`: the knowledge base's retrieval, measured — quality on a Chinese test set,
the relevance threshold's calibration, and speed at 10,000 passages.

The test set (bench/retrieval_data/): 13 documents of six kinds — WeChat articles synced through a
fake of freepublish/batchget, a saved WeChat article page and another HTML page, PDFs, DOCX files,
Markdown, plain text (one in GBK) — and 52 questions, each with the passage that answers it, plus 40
questions the knowledge base cannot answer. Everything goes through the bot's own code: the readers
of bot/knowledge/formats.py, the sync of bot/knowledge/sync.py, a real Redis.

Reported:
* recall@1, recall@3 and MRR@10 for BM25 alone, dense alone and both fused (RRF), at several passage
  sizes. Dense vectors come from a loopback fake /v1/embeddings (hashed character n-grams,
  testing/fakes/embeddings.py) unless --embedding-model/--embedding-base-url name a real server.
* the relevance threshold: for each candidate value, how many answerable questions get their answer
  passage in the prompt and how many unanswerable ones get any passage, in a knowledge base of one
  short document, of the 13 documents, and of 10,000 passages;
* at 10,000 passages (the 13 documents and generated Chinese text): indexing time, the first build
  of a process's index and its rebuild after a change, and the time retrieval adds to an answer
  (p50/p95/p99 of KnowledgeBase.ground: the version GET, jieba, BM25, the prompt) — BM25 alone, and
  with the fake embedding server (its HTTP round trip included).

Results: bench/results/retrieval.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from bot.config import Settings, load_settings
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.chunking import CHUNK_CHARS
from bot.knowledge.documents import Block, Document
from bot.knowledge.index import Hit, Mode
from bot.knowledge.sync import sync_articles
from bot.ops.redis_server import RedisServer
from bot.runtime import Runtime
from testing.fakes.embeddings import FakeEmbeddings
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.knowledge import Spec, filler_texts, published_item, topical_texts, write

DATA = Path(__file__).resolve().parent / "retrieval_data"
RESULTS = Path(__file__).resolve().parent / "results"
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
THRESHOLDS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8)
CHUNK_SIZES = (150, 300, 500, 800)
SYSTEM = "你是一个乐于助人的中文助手，回答简洁、准确。"
APPID, SECRET = "wx0123456789abcdef", "bench-secret"


@dataclass(frozen=True)
class Question:
    text: str
    doc: str
    answer: str


@dataclass(frozen=True)
class DataSet:
    specs: dict[str, Spec]
    kinds: dict[str, dict[str, Any]]
    answered: list[Question]
    unrelated: list[str]


def load_data() -> DataSet:
    documents = yaml.safe_load((DATA / "documents.yaml").read_text(encoding="utf-8"))
    questions = yaml.safe_load((DATA / "questions.yaml").read_text(encoding="utf-8"))
    specs, kinds = {}, {}
    for item in documents:
        sections = [(s.get("heading") or "", list(s["paragraphs"])) for s in item["sections"]]
        specs[item["id"]] = Spec(
            item["title"],
            sections,
            url=item.get("url", ""),
            author=item.get("author", ""),
            digest=item.get("digest", ""),
        )
        kinds[item["id"]] = {"as": item["as"], "encoding": item.get("encoding", "utf-8")}
    answered = [Question(q["q"], q["doc"], q["answer"]) for q in questions["answered"]]
    for question in answered:  # each answer lies in exactly one document of the set
        holders = [
            d for d, spec in specs.items() if _flat(question.answer) in _flat("".join(spec.paragraphs))
        ]
        if holders != [question.doc]:
            raise ValueError(f"{question.text}: answer found in {holders}, expected [{question.doc}]")
    return DataSet(specs, kinds, answered, list(questions["unrelated"]))


def _flat(text: str) -> str:
    """Text without whitespace: a PDF's line breaks may add spaces between Latin letters."""
    return "".join(text.split())


# --- infrastructure ------------------------------------------------------------------------------
@dataclass
class Bench:
    redis_url: str
    wechat: FakeWeChatAPI
    embeddings: FakeEmbeddings
    client: redis.Redis
    workdir: Path
    embedding_model: str
    embedding_base_url: str

    def settings(self, dense: bool, **overrides: Any) -> Settings:
        extra: dict[str, Any] = {}
        if dense:
            extra = {"embedding_model": self.embedding_model, "embedding_base_url": self.embedding_base_url}
        return load_settings(
            wechat_token="bench",
            wechat_appid=APPID,
            wechat_secret=SECRET,
            wechat_api_base=self.wechat.url,
            redis_url=self.redis_url,
            openai_api_key="x",
            **(extra | overrides),
        )

    @contextmanager
    def runtime(self, dense: bool, **overrides: Any) -> Iterator[Runtime]:
        """A process's runtime (its own index cache, as a job worker's)."""
        runtime = Runtime(self.settings(dense, **overrides))
        try:
            yield runtime
        finally:
            runtime.close()

    def flush(self) -> None:
        self.client.flushdb()


@contextmanager
def infrastructure(args: argparse.Namespace) -> Iterator[Bench]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-retrieval-")))
        server = stack.enter_context(RedisServer(workdir / "redis"))
        wechat = stack.enter_context(FakeWeChatAPI(appid=APPID, secret=SECRET))
        embeddings = stack.enter_context(FakeEmbeddings())
        client = redis.Redis.from_url(server.url, decode_responses=True)
        stack.callback(client.close)
        model = args.embedding_model or "fake-hashed-ngrams-256"
        base_url = args.embedding_base_url or embeddings.base_url
        yield Bench(server.url, wechat, embeddings, client, workdir, model, base_url)


# --- the test set in a knowledge base -----------------------------------------------------------
def ingest(bench: Bench, data: DataSet, runtime: Runtime, only: list[str] | None = None) -> None:
    """The documents as an operator adds them: files through the readers, articles through the sync."""
    wanted = only or list(data.specs)
    articles = []
    for number, doc_id in enumerate(wanted):
        spec, kind = data.specs[doc_id], data.kinds[doc_id]
        if kind["as"] == "wechat":
            articles.append(published_item(f"ARTICLE_{doc_id}", 1_700_000_000 + number, spec))
            continue
        path = write(spec, bench.workdir / kind["as"], encoding=kind["encoding"])
        runtime.knowledge.add_file(path)
    bench.wechat.published = articles
    if articles:
        report = sync_articles(runtime.knowledge, runtime.wechat)
        if report.failed or report.added != len(articles):
            raise RuntimeError(f"sync failed: {report.text()}")


def rank_of(hits: list[Hit], answer: str) -> int | None:
    wanted = _flat(answer)
    for rank, hit in enumerate(hits, 1):
        if wanted in _flat(hit.passage.text):
            return rank
    return None


def quality(kb: KnowledgeBase, questions: list[Question]) -> dict[str, dict[str, float]]:
    """recall@1, recall@3 and MRR@10 of each ranking."""
    found: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ranks = [rank_of(kb.search(q.text, mode=mode, limit=10), q.answer) for q in questions]
        found[mode] = {
            "recall@1": _share(ranks, 1),
            "recall@3": _share(ranks, 3),
            "mrr@10": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
        }
    return found


def _share(ranks: list[int | None], k: int) -> float:
    return round(sum(1 for r in ranks if r is not None and r <= k) / len(ranks), 3)


def threshold_sweep(kb: KnowledgeBase, questions: list[Question], unrelated: list[str]) -> dict[str, Any]:
    """For each threshold: answerable questions whose answer passage is given to the model (grounded),
    and unanswerable ones given any passage (falsely grounded); BM25 ranking, as with no embeddings."""
    top_k = kb.settings.kb_top_k
    sweep = {}
    for threshold in THRESHOLDS:

        def used(question: str, t: float = threshold) -> list[Hit]:
            return [hit for hit in kb.search(question, mode="bm25", min_relevance=t) if hit.relevant][:top_k]

        grounded = sum(1 for q in questions if rank_of(used(q.text), q.answer) is not None)
        false = sum(1 for text in unrelated if used(text))
        sweep[str(threshold)] = {
            "grounded": round(grounded / len(questions), 3),
            "falsely_grounded": round(false / len(unrelated), 3),
        }
    return sweep


def single_document_sweep(bench: Bench, data: DataSet) -> dict[str, Any]:
    """Each document alone in the knowledge base, with its own questions and every unrelated one."""
    totals: dict[str, list[float]] = {}
    for doc_id in data.specs:
        bench.flush()
        with bench.runtime(dense=False) as runtime:
            ingest(bench, data, runtime, only=[doc_id])
            own = [q for q in data.answered if q.doc == doc_id]
            for threshold, figures in threshold_sweep(runtime.knowledge, own, data.unrelated).items():
                totals.setdefault(threshold, []).append(figures["grounded"])
                totals.setdefault(f"{threshold}:false", []).append(figures["falsely_grounded"])
    return {
        str(t): {
            "grounded": round(statistics.mean(totals[str(t)]), 3),
            "falsely_grounded": round(statistics.mean(totals[f"{t}:false"]), 3),
        }
        for t in THRESHOLDS
    }


# --- 10,000 passages ------------------------------------------------------------------------------
FILLER_PARAGRAPHS = 5


def filler_documents(passages: int, topical: bool = True) -> list[Document]:
    """Generated Chinese documents of FILLER_PARAGRAPHS passages: each about one topic (as articles
    are), or of words drawn from anywhere (the worst case for the relevance threshold)."""
    if topical:
        texts = topical_texts(passages, per_topic=FILLER_PARAGRAPHS, seed=2024)
    else:
        texts = filler_texts(passages, seed=2024)
    documents = []
    for start in range(0, len(texts), FILLER_PARAGRAPHS):
        blocks = [Block(text) for text in texts[start : start + FILLER_PARAGRAPHS]]
        number = start // FILLER_PARAGRAPHS
        documents.append(Document(f"资料汇编第{number}号", blocks, source="file", key=f"filler-{number}.txt"))
    return documents


def add_all(kb: KnowledgeBase, documents: list[Document]) -> None:
    for document in documents:
        kb.add(document)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def latency(kb: KnowledgeBase, questions: list[str], rounds: int) -> dict[str, Any]:
    """Milliseconds KnowledgeBase.ground adds to an answer (the index already built); with vectors,
    also the part of it that is the embedding server's round trip for the question."""
    embedder, embedded = kb.embedder, []
    if embedder is not None:
        original = embedder.embed_query

        def timed_embedding(text: str, timeout: float | None = None) -> Any:
            seconds, vector = timed(partial(original, text, timeout))
            embedded.append(seconds * 1000)
            return vector

        embedder.embed_query = timed_embedding  # type: ignore[method-assign]
    samples = []
    for _ in range(rounds):
        for question in questions:
            seconds, _ = timed(partial(kb.ground, SYSTEM, question))
            samples.append(seconds * 1000)
    if embedder is not None:
        embedder.embed_query = original  # type: ignore[method-assign]
    found = _distribution(samples)
    if embedded:
        found["embedding"] = _distribution(embedded)
        found["without_embedding"] = _distribution([a - b for a, b in zip(samples, embedded, strict=True)])
    return found


def _distribution(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "queries": len(ordered),
        "p50_ms": round(_percentile(ordered, 50), 2),
        "p95_ms": round(_percentile(ordered, 95), 2),
        "p99_ms": round(_percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


def _percentile(ordered: list[float], p: float) -> float:
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def at_scale(bench: Bench, data: DataSet, passages: int, rounds: int) -> dict[str, Any]:
    questions = [q.text for q in data.answered] + data.unrelated
    result: dict[str, Any] = {}
    for dense in (False, True):
        bench.flush()
        label = "hybrid" if dense else "bm25"
        with bench.runtime(dense=dense) as tool:  # the process that indexes (make kb-add)
            ingest(bench, data, tool)
            have = sum(record.chunks for record in tool.knowledge.documents())
            fillers = filler_documents(passages - have)
            seconds, _ = timed(partial(add_all, tool.knowledge, fillers))
            total = sum(record.chunks for record in tool.knowledge.documents())
        with bench.runtime(dense=dense) as worker:  # a job worker: its own index, built at its first question
            kb = worker.knowledge
            memory_before = psutil.Process().memory_info().rss
            build, _ = timed(kb.index.snapshot)
            memory = psutil.Process().memory_info().rss - memory_before
            entry: dict[str, Any] = {
                "passages": total,
                "index_seconds": round(seconds, 1),
                "index_passages_per_second": round((total - have) / seconds),
                "first_build_seconds": round(build, 2),
                "index_memory_mb": round(memory / 2**20),
            }
            entry["latency"] = latency(kb, questions, rounds)
            with bench.runtime(dense=dense) as other:  # another process adds a document meanwhile
                other.knowledge.add(
                    Document("新增资料", [Block("新增的一段。")], source="file", key="new.txt")
                )
            rebuild, _ = timed(partial(kb.ground, SYSTEM, questions[0]))
            entry["first_question_after_change_seconds"] = round(rebuild, 2)
            while kb.index.snapshot().hidden is not None:  # the rebuild goes on in the background
                time.sleep(0.05)
            entry["rebuild_seconds"] = round(kb.index.last_rebuild_seconds, 2)
            entry["quality"] = quality(kb, data.answered)
            if not dense:
                entry["threshold"] = threshold_sweep(kb, data.answered, data.unrelated)
            result[label] = entry
    return result


def worst_case_threshold(bench: Bench, data: DataSet, passages: int) -> dict[str, Any]:
    """The threshold sweep among generated text whose every word may be anywhere."""
    bench.flush()
    with bench.runtime(dense=False) as runtime:
        ingest(bench, data, runtime)
        have = sum(record.chunks for record in runtime.knowledge.documents())
        for document in filler_documents(passages - have, topical=False):
            runtime.knowledge.add(document)
        return threshold_sweep(runtime.knowledge, data.answered, data.unrelated)


def empty_base_latency(bench: Bench, rounds: int) -> dict[str, float]:
    bench.flush()
    with bench.runtime(dense=False) as runtime:
        return latency(runtime.knowledge, ["行业轮动模型推荐哪些行业？"], rounds * 50)


# --- the run ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_data()
    results: dict[str, Any] = {
        "documents": len(data.specs),
        "answered_questions": len(data.answered),
        "unrelated_questions": len(data.unrelated),
        "chunk_chars": CHUNK_CHARS,
    }
    with infrastructure(args) as bench:
        results["embedding_model"] = bench.embedding_model
        by_size: dict[str, Any] = {}
        for size in CHUNK_SIZES:
            bench.flush()
            with bench.runtime(dense=True) as runtime:
                runtime.knowledge.chunk_chars = size
                ingest(bench, data, runtime)
                figures: dict[str, Any] = {"passages": sum(r.chunks for r in runtime.knowledge.documents())}
                figures |= quality(runtime.knowledge, data.answered)
                if size == CHUNK_CHARS:
                    figures["threshold"] = threshold_sweep(runtime.knowledge, data.answered, data.unrelated)
                by_size[str(size)] = figures
                print(f"passages of {size} characters: {json.dumps(figures, ensure_ascii=False)}", flush=True)
        results["by_chunk_size"] = by_size
        results["single_document_threshold"] = single_document_sweep(bench, data)
        print("single documents done", flush=True)
        results["empty_knowledge_base"] = empty_base_latency(bench, args.rounds)
        results["scale"] = at_scale(bench, data, args.passages, args.rounds)
        print("scale done", flush=True)
        results["worst_case_threshold"] = worst_case_threshold(bench, data, args.passages)
    return results


def markdown(results: dict[str, Any], meta: str) -> str:
    lines = [meta, ""]
    size = str(results["chunk_chars"])
    lines += [
        f"**Quality** — {results['answered_questions']} questions over {results['documents']} documents "
        f"(passages of {size} characters); dense: `{results['embedding_model']}`.",
        "",
        "| Passages of | passages | ranking | recall@1 | recall@3 | MRR@10 |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for chunk_size, figures in results["by_chunk_size"].items():
        for mode in MODES:
            q = figures[mode]
            row = [chunk_size, figures["passages"], mode, q["recall@1"], q["recall@3"], q["mrr@10"]]
            lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    scale = results["scale"]
    lines += ["", f"At {scale['bm25']['passages']} passages (the 13 documents among generated text):", ""]
    lines += ["| ranking | recall@1 | recall@3 | MRR@10 |", "|---|---:|---:|---:|"]
    for mode in MODES:
        q = scale["hybrid"]["quality"][mode]
        lines.append(f"| {mode} | {q['recall@1']} | {q['recall@3']} | {q['mrr@10']} |")
    lines += [
        "",
        "**Relevance threshold** (`KB_MIN_RELEVANCE`, BM25 ranking): answerable questions whose answer "
        "passage is given to the model / unanswerable questions given any passage.",
        "",
        "| threshold | one short document | 13 documents | 10,000 passages "
        "| 10,000 passages, words from anywhere |",
        "|---:|---|---|---|---|",
    ]
    for threshold in THRESHOLDS:
        t = str(threshold)
        cells = [
            results["single_document_threshold"][t],
            results["by_chunk_size"][size]["threshold"][t],
            scale["bm25"]["threshold"][t],
            results["worst_case_threshold"][t],
        ]
        figures = " | ".join(f"{c['grounded']:.0%} / {c['falsely_grounded']:.0%}" for c in cells)
        lines.append(f"| {threshold} | {figures} |")
    lines += [
        "",
        f"**Indexing {scale['bm25']['passages']} passages** (one process; the first question of a process "
        "builds its index, a change rebuilds it):",
        "",
        "| retrieval | indexing | passages/s | first build | rebuild after a change (background) "
        "| first question after a change | index memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("bm25", "hybrid"):
        e = scale[label]
        cells = [
            label,
            f"{e['index_seconds']} s",
            e["index_passages_per_second"],
            f"{e['first_build_seconds']} s",
            f"{e['rebuild_seconds']} s",
            f"{e['first_question_after_change_seconds'] * 1000:.0f} ms",
            f"{e['index_memory_mb']} MB",
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += [
        "",
        f"**Time retrieval adds to an answer at {scale['bm25']['passages']} passages** "
        f"({scale['bm25']['latency']['queries']} questions each):",
        "",
        "| retrieval | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [("BM25", scale["bm25"]["latency"]), ("BM25 + vectors", scale["hybrid"]["latency"])]
    if "without_embedding" in scale["hybrid"]["latency"]:
        rows.append(
            ("BM25 + vectors, without the embedding call", scale["hybrid"]["latency"]["without_embedding"])
        )
        rows.append(("the embedding call alone (loopback fake)", scale["hybrid"]["latency"]["embedding"]))
    for label, lat in rows:
        figures = " | ".join(f"{lat[key]} ms" for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
        lines.append(f"| {label} | {figures} |")
    empty = results["empty_knowledge_base"]
    lines += [
        "",
        f"Empty knowledge base: p50 {empty['p50_ms']} ms, p99 {empty['p99_ms']} ms (one GET of the version).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__)
    parser.add_argument("--passages", type=int, default=10_000, help="passages of the scale test")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the 92 questions for latency")
    parser.add_argument("--embedding-model", default=os.environ.get("EMBEDDING_MODEL", ""))
    parser.add_argument("--embedding-base-url", default=os.environ.get("EMBEDDING_BASE_URL", ""))
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    results = run(args)
    meta = (
        f"Retrieval benchmark of {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"(Python {platform.python_version()}, load average {load:.2f} before the run), "
        "`make bench-retrieval`."
    )
    results["meta"] = meta
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    text = markdown(results, meta)
    (RESULTS / "retrieval.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
