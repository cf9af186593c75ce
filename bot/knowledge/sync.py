"""The account's published articles into the knowledge base, incrementally (/kb sync, make kb-sync).

The articles are listed through WeChat's API, 20 a page, until `total_count`: the published ones
(freepublish/batchget), or — for an account that may not call it (48001) — the permanent news
materials (material/batchget_material). Each article is compared with what the knowledge base holds
under its key: new ones are added, changed ones (another update_time or content) indexed again,
deleted ones (`is_deleted`, or no longer listed) removed, the others left alone. A listing that
stops early removes nothing.

One sync at a time, across every process: the sync lock in Redis, renewed at every page and article,
so a sync whose worker died stops blocking the next one after a few minutes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot import texts
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.documents import Block, Document
from bot.knowledge.embeddings import EmbeddingError
from bot.knowledge.formats import html_blocks
from bot.store.knowledge import DocumentRecord
from bot.wechat.api import WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

#: articles per page (WeChat allows 1-20)
PAGE_SIZE = 20
#: a listing longer than this many pages is cut (100,000 articles)
MAX_PAGES = 5000
SOURCE = "wechat"
UNAUTHORIZED = 48001
#: failed articles named in the report, at most
NAMED_FAILURES = 3


class SyncUnavailable(Exception):
    """The account may list neither its published articles nor its materials."""


class SyncLost(Exception):
    """Another sync took over (this one's lock expired)."""


@dataclass(frozen=True)
class Article:
    key: str
    title: str
    html: str
    url: str = ""
    author: str = ""
    digest: str = ""
    update_time: int = 0
    deleted: bool = False

    @property
    def version(self) -> str:
        content = hashlib.sha256(f"{self.title}\n{self.digest}\n{self.url}\n{self.html}".encode()).hexdigest()
        return f"{self.update_time}:{content[:16]}"


@dataclass
class SyncReport:
    source: str = "freepublish"
    added: int = 0
    updated: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    failed_titles: list[str] = field(default_factory=list)
    #: why the listing stopped before its end ("" when it was read whole)
    partial: str = ""

    def text(self) -> str:
        source = texts.KB_SOURCE_MATERIAL if self.source == "material" else texts.KB_SOURCE_FREEPUBLISH
        text = texts.KB_SYNC_REPORT.format(
            source=source,
            added=self.added,
            updated=self.updated,
            removed=self.removed,
            failed=self.failed,
            unchanged=self.unchanged,
        )
        if self.failed_titles:
            text += texts.KB_SYNC_FAILED_TITLES.format(titles="、".join(self.failed_titles))
        if self.partial:
            text += texts.KB_SYNC_PARTIAL.format(error=self.partial)
        return text


def run_sync(kb: KnowledgeBase, api: WeChatAPI, token: str, by: str) -> str | None:
    """Sync under the lock claimed with `token`; the report (or why it failed) in one text, also kept
    for /kb. None when another sync holds the lock."""
    store = kb.store
    if not store.take_sync(token):
        return None
    store.start_sync_record(by)
    status = "failed"
    try:
        report = sync_articles(kb, api, lambda: _renew(kb, token))
        text, status = report.text(), "done"
    except SyncUnavailable:
        text = texts.KB_SYNC_UNAUTHORIZED
    except (WeChatAPIError, SyncLost) as exc:
        text = texts.KB_SYNC_FAILED.format(error=exc)
    except Exception as exc:
        log.exception("knowledge base sync failed")
        text = texts.KB_SYNC_FAILED.format(error=type(exc).__name__)
    finally:
        store.release_sync(token)
    store.save_sync(status=status, finished=time.time(), result=text)
    log.info("knowledge base sync (%s): %s", status, text)
    return text


def _renew(kb: KnowledgeBase, token: str) -> None:
    if not kb.store.renew_sync(token):
        raise SyncLost("the sync lock expired and another sync may have started")


def sync_articles(
    kb: KnowledgeBase, api: WeChatAPI, progress: Callable[[], None] = lambda: None
) -> SyncReport:
    """List every article and bring the knowledge base in line with the listing."""
    held = {record.key: record for record in kb.documents() if record.source == SOURCE}
    report, seen = SyncReport(), set()
    try:
        for source, article in _listing(api, progress):
            report.source = source
            seen.add(article.key)
            _apply(kb, held, article, report)
            progress()
    except WeChatAPIError as exc:
        if not seen:
            raise
        report.partial = str(exc)
    if not report.partial:
        for key in held.keys() - seen:
            if kb.remove(held[key].id) is not None:
                report.removed += 1
    return report


def _apply(kb: KnowledgeBase, held: dict[str, DocumentRecord], article: Article, report: SyncReport) -> None:
    record = held.get(article.key)
    if article.deleted:
        if record is not None and kb.remove(record.id) is not None:
            report.removed += 1
        return
    model = kb.settings.embedding_model
    if record is not None and record.version == article.version and record.embedding == model:
        report.unchanged += 1
        return
    try:
        kb.add(article_document(article))
    except (EmbeddingError, ValueError) as exc:
        log.warning("article %r not indexed: %s", article.title, exc)
        report.failed += 1
        if len(report.failed_titles) < NAMED_FAILURES:
            report.failed_titles.append(article.title[:30] or article.key)
        return
    if record is None:
        report.added += 1
    else:
        report.updated += 1


def article_document(article: Article) -> Document:
    """ValueError for an article with no text."""
    _, blocks, _ = html_blocks(article.html) if article.html.strip() else ("", [], "")
    if article.digest.strip() and not any(block.text == article.digest.strip() for block in blocks[:3]):
        blocks.insert(0, Block(article.digest.strip()))
    if not blocks:
        raise ValueError("the article has no text")
    return Document(
        article.title or article.key,
        blocks,
        source=SOURCE,
        key=article.key,
        url=article.url,
        name=article.author,
        version=article.version,
    )


def _listing(api: WeChatAPI, progress: Callable[[], None]) -> Iterator[tuple[str, Article]]:
    """Every article, published ones first; the permanent materials when the account may not list them."""
    try:
        first = api.published_articles(0, PAGE_SIZE)
    except WeChatAPIError as exc:
        if exc.errcode != UNAUTHORIZED:
            raise
        log.info("freepublish/batchget refused (48001): listing the permanent news materials")
        yield from (("material", article) for article in _materials(api, progress))
        return
    yield from (("freepublish", article) for article in _pages(first, api.published_articles, progress))


def _materials(api: WeChatAPI, progress: Callable[[], None]) -> Iterator[Article]:
    try:
        first = api.news_materials(0, PAGE_SIZE)
    except WeChatAPIError as exc:
        if exc.errcode == UNAUTHORIZED:
            raise SyncUnavailable(str(exc)) from exc
        raise
    yield from _pages(first, api.news_materials, progress)


def _pages(
    first: dict[str, Any], fetch: Callable[[int, int], dict[str, Any]], progress: Callable[[], None]
) -> Iterator[Article]:
    page, offset = first, 0
    for _ in range(MAX_PAGES):
        items = [item for item in page.get("item") or [] if isinstance(item, dict)]
        for item in items:
            yield from _articles(item)
        offset += len(items)
        if not items or offset >= int(page.get("total_count") or 0):
            return
        progress()
        page = fetch(offset, PAGE_SIZE)


def _articles(item: dict[str, Any]) -> Iterator[Article]:
    """The articles of one listed item (a publication may hold several: its news_item list)."""
    ident = str(item.get("article_id") or item.get("media_id") or "")
    kind = "freepublish" if "article_id" in item else "material"
    content = item.get("content") or {}
    update_time = int(item.get("update_time") or content.get("update_time") or 0)
    for index, news in enumerate(content.get("news_item") or []):
        if not isinstance(news, dict):
            continue
        yield Article(
            key=f"{kind}:{ident}:{index}",
            title=" ".join(str(news.get("title") or "").split()),
            html=str(news.get("content") or ""),
            url=str(news.get("url") or ""),
            author=str(news.get("author") or ""),
            digest=str(news.get("digest") or ""),
            update_time=update_time,
            deleted=bool(news.get("is_deleted")),
        )
