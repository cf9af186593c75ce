"""What admins read about the knowledge base: /kb, /kb search, and the report of a sync — which
reaches them the way a late answer does: as a customer-service message in active mode, or in passive
mode on their next message (an answer put on their owed list, fetched by the delivery logic of
bot/delivery/ like any other; nothing in the 5-second logic knows about it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from bot import texts
from bot.delivery.active import ActiveSender
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.index import Hit
from bot.replies import utf8_len
from bot.store.answers import AnswerStore

#: the question a sync report answers, as the late-answer heading quotes it
REPORT_QUESTION = "/kb sync"
#: documents listed by /kb, newest first
LISTED = 5
#: characters of a passage shown by /kb search
EXCERPT_CHARS = 60
#: a report needs no lease beyond the moment it is written
REPORT_LEASE_MS = 10_000


def deliver_report(
    answers: AnswerStore, sender: ActiveSender, mode: str, admin: str, pages: list[str]
) -> str:
    """Give the admin a finished answer holding the report; its id."""
    answer_id = answers.create(
        admin,
        REPORT_QUESTION,
        owner=f"kb-sync:{uuid.uuid4().hex}",
        reserved_for=0,
        delivery=mode,
        kind="report",
    )
    answer = answers.get(answer_id)
    lease = answers.take_lease(answer_id, REPORT_LEASE_MS)
    if answer is None or lease is None:
        return answer_id
    try:
        answers.finish(answer, pages, "done", lease=lease)
    finally:
        answers.release_lease(answer_id, lease)
    if mode == "active":
        sender.send_ready_pages(answer_id)
    return answer_id


def status_text(kb: KnowledgeBase, zone: ZoneInfo, budget: int) -> str:
    """/kb: documents, passages, how questions are ranked, the last sync; the newest documents."""
    records = kb.documents()
    settings = kb.settings
    if settings.embedding_model:
        retrieval = texts.KB_RETRIEVAL_HYBRID.format(
            model=settings.embedding_model,
            threshold=settings.kb_min_relevance,
            similarity=settings.kb_min_similarity,
        )
    else:
        retrieval = texts.KB_RETRIEVAL_BM25.format(threshold=settings.kb_min_relevance)
    text = texts.KB_STATUS.format(
        documents=len(records),
        passages=sum(record.chunks for record in records),
        articles=sum(record.source == "wechat" for record in records),
        files=sum(record.source == "file" for record in records),
        retrieval=retrieval,
        sync=_sync_line(kb, zone),
    )
    if not records:
        return text + "\n" + texts.KB_EMPTY
    newest = sorted(records, key=lambda record: -record.updated)
    lines = [
        texts.KB_STATUS_DOC.format(id=r.id, title=r.title[:30], chunks=r.chunks) for r in newest[:LISTED]
    ]
    if len(records) > LISTED:
        lines.append(texts.KB_STATUS_MORE.format(more=len(records) - LISTED))
    return _fit(text, lines, budget)


def _sync_line(kb: KnowledgeBase, zone: ZoneInfo) -> str:
    record = kb.store.sync_record()
    if record.get("status") == "running":
        running = kb.store.sync_running()
        line = texts.KB_SYNC_RUNNING if running else texts.KB_SYNC_DIED  # its worker died: the lock expired
        return line.format(started=_when(record.get("started"), zone))
    if not record.get("finished"):
        return texts.KB_SYNC_NEVER
    return texts.KB_SYNC_LAST.format(
        finished=_when(record["finished"], zone), result=record.get("result", "")
    )


def _when(timestamp: str | None, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(float(timestamp or 0), zone).strftime("%Y-%m-%d %H:%M")


def search_text(kb: KnowledgeBase, query: str, budget: int) -> str:
    """/kb search: the passages the bot would give the model for `query`, with their scores and
    sources; when none is relevant enough, the nearest ones, marked as unused."""
    hits = kb.search(query)
    used = [hit for hit in hits if hit.relevant][: kb.settings.kb_top_k]
    if used:
        return _fit(
            texts.KB_SEARCH_HEAD.format(query=query[:40]),
            [_hit_line(n, h) for n, h in enumerate(used, 1)],
            budget,
        )
    head = texts.KB_SEARCH_NONE.format(threshold=kb.settings.kb_min_relevance)
    if not hits:
        return head
    lines = [texts.KB_SEARCH_NEAREST] + [_hit_line(n, hit) for n, hit in enumerate(hits[:3], 1)]
    return _fit(head, lines, budget)


def _hit_line(n: int, hit: Hit) -> str:
    passage = hit.passage
    excerpt = " ".join(passage.text.split())
    excerpt = excerpt if len(excerpt) <= EXCERPT_CHARS else excerpt[:EXCERPT_CHARS] + "…"
    similarity = (
        "" if hit.similarity is None else texts.KB_SEARCH_SIMILARITY.format(similarity=hit.similarity)
    )
    where = (
        texts.KB_WHERE_ARTICLE
        if passage.source == "wechat"
        else texts.KB_WHERE_FILE.format(name=passage.name)
    )
    return texts.KB_SEARCH_HIT.format(
        n=n,
        relevance=hit.relevance,
        similarity=similarity,
        bm25=hit.bm25,
        title=passage.title[:30],
        where=where,
        excerpt=excerpt,
    )


def _fit(head: str, lines: list[str], budget: int) -> str:
    """`head` and as many whole lines as fit in `budget` bytes."""
    text = head
    for line in lines:
        if utf8_len(text + line) > budget:
            break
        text += line
    return text
