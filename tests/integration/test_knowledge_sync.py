"""The sync of the account's articles into the knowledge base, against a loopback fake of WeChat's
freepublish/batchget and material/batchget_material: several pages, incremental re-syncs (a changed
article, a deleted one), 48001 and the material-list fallback, and the lock that allows one sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot import texts
from bot.knowledge.sync import PAGE_SIZE, run_sync, sync_articles
from bot.runtime import Runtime
from bot.wechat.api import WeChatAPIError
from testing.fakes.wechat_api import FakeWeChatAPI, body_json
from testing.knowledge import Spec, material_item, published_item
from tests.conftest import Bot


def spec(number: int, text: str = "") -> Spec:
    body = text or f"第{number}篇文章讨论第{number}号因子的构建方法与回测结果。"
    return Spec(
        f"因子研究第{number}期",
        [("正文", [body])],
        url=f"https://mp.weixin.qq.com/s/a{number}",
        author="金工",
    )


def publications(count: int, per_item: int = 1) -> list[dict[str, Any]]:
    """`count` publications, newest first, each of `per_item` articles."""
    items = []
    for number in range(count):
        specs = [spec(number * 10 + index) for index in range(per_item)]
        items.append(published_item(f"ART{number}", 1_700_000_000 + number, *specs))
    return list(reversed(items))


@pytest.fixture
def runtime(make_bot: Callable[..., Bot]) -> Runtime:
    return make_bot(with_worker=False).runtime


def titles(runtime: Runtime) -> set[str]:
    return {record.title for record in runtime.knowledge.documents()}


def test_every_page_is_read_and_each_article_indexed(runtime: Runtime, fake_wechat: FakeWeChatAPI) -> None:
    fake_wechat.published = publications(22, per_item=2)  # 44 articles in 22 publications: 2 pages
    report = sync_articles(runtime.knowledge, runtime.wechat)
    assert (report.added, report.updated, report.removed, report.failed) == (44, 0, 0, 0)
    bodies = [body_json(request) for request in fake_wechat.requests_to("/cgi-bin/freepublish/batchget")]
    assert bodies == [
        {"offset": 0, "count": PAGE_SIZE, "no_content": 0},
        {"offset": 20, "count": 20, "no_content": 0},
    ]
    record = next(r for r in runtime.knowledge.documents() if r.title == "因子研究第71期")
    assert (record.source, record.url, record.name) == ("wechat", "https://mp.weixin.qq.com/s/a71", "金工")
    hits = runtime.knowledge.retrieve("第71号因子的构建方法")
    assert hits and hits[0].passage.title == "因子研究第71期"


def test_a_second_sync_indexes_only_new_and_changed_articles_and_drops_deleted_ones(
    runtime: Runtime, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.published = publications(25)
    sync_articles(runtime.knowledge, runtime.wechat)
    before = {record.key: record.rev for record in runtime.knowledge.documents()}
    items = publications(25)
    changed = next(item for item in items if item["article_id"] == "ART3")
    changed["update_time"] += 100
    changed["content"]["news_item"][0]["content"] = "<p>第30号因子改用了新的中性化方法。</p>"
    deleted = next(item for item in items if item["article_id"] == "ART4")
    deleted["content"]["news_item"][0]["is_deleted"] = True
    items = [item for item in items if item["article_id"] != "ART5"]  # no longer published
    items.insert(0, published_item("ART99", 1_800_000_000, spec(990)))
    fake_wechat.published = items
    report = sync_articles(runtime.knowledge, runtime.wechat)
    assert (report.added, report.updated, report.removed, report.unchanged, report.failed) == (1, 1, 2, 22, 0)
    after = {record.key: record.rev for record in runtime.knowledge.documents()}
    assert len(after) == 24 and "freepublish:ART4:0" not in after and "freepublish:ART5:0" not in after
    assert after["freepublish:ART3:0"] != before["freepublish:ART3:0"]
    assert after["freepublish:ART7:0"] == before["freepublish:ART7:0"]  # not indexed again
    assert "新的中性化方法" in runtime.knowledge.retrieve("第30号因子的中性化方法")[0].passage.text
    assert report.text() == texts.KB_SYNC_REPORT.format(
        source=texts.KB_SOURCE_FREEPUBLISH, added=1, updated=1, removed=2, failed=0, unchanged=22
    )


def test_an_account_without_freepublish_falls_back_to_its_materials(
    runtime: Runtime, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.fail("freepublish", 48001)
    fake_wechat.materials = [material_item(f"MEDIA{n}", 1_700_000_000 + n, spec(n)) for n in range(23)]
    report = sync_articles(runtime.knowledge, runtime.wechat)
    assert (report.source, report.added) == ("material", 23)
    bodies = [
        body_json(request) for request in fake_wechat.requests_to("/cgi-bin/material/batchget_material")
    ]
    assert bodies == [{"type": "news", "offset": 0, "count": 20}, {"type": "news", "offset": 20, "count": 20}]
    assert "因子研究第22期" in titles(runtime)
    assert texts.KB_SOURCE_MATERIAL in report.text()


def test_an_account_with_neither_permission_is_told_how_to_add_its_articles(
    runtime: Runtime, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.fail("freepublish", 48001)
    fake_wechat.fail("material", 48001)
    runtime.knowledge.store.claim_sync("token")
    text = run_sync(runtime.knowledge, runtime.wechat, "token", by="admin-1")
    assert text == texts.KB_SYNC_UNAUTHORIZED and "make kb-add" in text
    record = runtime.knowledge.store.sync_record()
    assert (record["status"], record["result"], record["by"]) == ("failed", text, "admin-1")
    assert not runtime.knowledge.store.sync_running()  # the lock is released


def test_another_error_is_reported_as_it_is(runtime: Runtime, fake_wechat: FakeWeChatAPI) -> None:
    fake_wechat.fail("freepublish", 45009)
    runtime.knowledge.store.claim_sync("token")
    text = run_sync(runtime.knowledge, runtime.wechat, "token", by="admin-1")
    assert text is not None and text.startswith(texts.KB_SYNC_FAILED.format(error="")) and "45009" in text


def test_a_listing_that_stops_midway_removes_nothing(
    runtime: Runtime, fake_wechat: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_wechat.published = publications(30)
    sync_articles(runtime.knowledge, runtime.wechat)
    fake_wechat.published = publications(30)[:25]  # five are gone, but the second page fails
    listed = runtime.wechat.published_articles

    def second_page_fails(offset: int, count: int) -> dict[str, Any]:
        if offset > 0:
            raise WeChatAPIError(-1, "system error")
        return listed(offset, count)

    monkeypatch.setattr(runtime.wechat, "published_articles", second_page_fails)
    report = sync_articles(runtime.knowledge, runtime.wechat)
    assert report.removed == 0 and report.partial and len(runtime.knowledge.documents()) == 30
    assert texts.KB_SYNC_PARTIAL.format(error=report.partial) in report.text()


def test_an_article_without_text_is_counted_as_failed_and_named(
    runtime: Runtime, fake_wechat: FakeWeChatAPI
) -> None:
    empty = published_item("EMPTY", 1_700_000_000, Spec("只有图片的文章", [("", [])]))
    fake_wechat.published = [empty, *publications(2)]
    report = sync_articles(runtime.knowledge, runtime.wechat)
    assert (report.added, report.failed, report.failed_titles) == (2, 1, ["只有图片的文章"])
    assert "只有图片的文章" in report.text()


def test_one_sync_at_a_time(runtime: Runtime, fake_wechat: FakeWeChatAPI) -> None:
    store = runtime.knowledge.store
    assert store.claim_sync("first") and not store.claim_sync("second")
    assert run_sync(runtime.knowledge, runtime.wechat, "second", by="admin-2") is None
    assert run_sync(runtime.knowledge, runtime.wechat, "first", by="admin-1") is not None
    assert store.claim_sync("third")  # free again
