"""The knowledge-base tool: the model searches the knowledge base when it decides it needs to (another
wording of the question, a second topic), on top of the passages an answer is already grounded in.

It ranks exactly as answering does (KnowledgeBase.retrieve: BM25, fused with the embeddings when
EMBEDDING_MODEL is set, and the same relevance test), and gives back each passage found as its title,
heading, an excerpt and its link, within MAX_RESULT characters; the passages' documents go with the
result, for the sources listed after the answer (the model is told not to list them itself). BM25 takes
milliseconds; the question's embedding, the one call that leaves the process, is given EMBED_SECONDS
(then BM25 alone), so that a search stays within the 1 s every tool has.

It is offered only while the knowledge base has documents (`available`, asked before each answer): a
tool that can only say "nothing found" would cost the model a round for nothing."""

from __future__ import annotations

import logging
from typing import Any

from bot.knowledge.base import KnowledgeBase, sources_of
from bot.knowledge.index import Hit
from bot.tools.base import MAX_RESULT, Found, ToolError, ToolSpec

log = logging.getLogger(__name__)

NAME = "search_knowledge"
#: passages one search may return (the model's top_k is clamped to 1…MAX_TOP_K)
DEFAULT_TOP_K, MAX_TOP_K = 3, 5
#: characters of a query (a few words, not a document)
MAX_QUERY = 200
#: seconds the query's embedding may take before the search goes on with BM25 alone
EMBED_SECONDS = 0.8
#: a link longer than this is left out (the title still names the document)
MAX_URL = 200
#: characters of a passage shown at least, however little room its title and link leave
MIN_EXCERPT = 40


def _query(arguments: dict[str, Any]) -> str:
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("missing argument query (what to look up, a few words)")
    if len(query) > MAX_QUERY:
        raise ToolError(f"the query is too long (at most {MAX_QUERY} characters)")
    return " ".join(query.split())


def _top_k(arguments: dict[str, Any]) -> int:
    top_k = arguments.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise ToolError(f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return min(max(top_k, 1), MAX_TOP_K)


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(n: int, hit: Hit, budget: int) -> str:
    """One passage in `budget` characters: `[n] title › heading`, an excerpt, and where it comes from
    (its link, or the file's name)."""
    passage = hit.passage
    heading = f" › {_excerpt(passage.section, 30)}" if passage.section else ""
    head = f"[{n}] {_excerpt(passage.title or passage.name, 50)}{heading}"
    url = passage.url.strip()
    if url.startswith(("https://", "http://")) and len(url) <= MAX_URL:
        source = f"source: {url}"
    else:
        source = f"source: file {_excerpt(passage.name, 50)}" if passage.name else ""
    excerpt = _excerpt(passage.text, max(budget - len(head) - len(source) - 2, MIN_EXCERPT))
    return "\n".join(part for part in (head, excerpt, source) if part)


def found_text(query: str, hits: list[Hit]) -> str:
    """The results as the model reads them, within MAX_RESULT characters whatever the passages."""
    if not hits:
        return f"no passage of the knowledge base is relevant to {query!r}"
    head = f"{len(hits)} passage(s) of the knowledge base for {query!r}:"
    budget = (MAX_RESULT - len(head)) // len(hits) - 1
    return "\n".join([head, *(_shown(n, hit, budget) for n, hit in enumerate(hits, 1))])[:MAX_RESULT]


def spec(knowledge: KnowledgeBase) -> ToolSpec:
    def run(arguments: dict[str, Any]) -> Found:
        query, top_k = _query(arguments), _top_k(arguments)
        try:
            hits = knowledge.retrieve(query, top_k=top_k, embed_timeout=EMBED_SECONDS)
        except Exception as exc:  # Redis or the index failed: the model answers without the search
            log.warning("knowledge-base tool: search failed (%s)", exc)
            raise ToolError("the knowledge base cannot be searched right now") from None
        # the passages' documents: the answer's sources list them, as they list the grounding's
        return Found(found_text(query, hits), sources_of([hit.passage for hit in hits]))

    def available() -> bool:
        try:
            return knowledge.has_documents()
        except Exception as exc:  # as when answering: no knowledge base rather than no answer
            log.warning("knowledge-base tool: not offered (%s)", exc)
            return False

    return ToolSpec(
        name=NAME,
        description=(
            "在本公众号的知识库（文章和资料）里检索与 query 相关的段落，返回标题、摘录和来源链接。"
            "问题涉及本号发布过的观点、报告、数据或产品时调用；没有找到就如实说明，不要编造。"
            "不要自己列出来源或链接，系统会在回答后附上来源。"
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "要检索的内容 query，几个关键词或一句话"},
                "top_k": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_TOP_K,
                    "description": "返回的段落数 top_k，1 到 5，默认 3",
                },
            },
            "required": ["query"],
        },
        run=run,
        available=available,
    )
