"""The knowledge-base tool on a real Redis: what it finds (the same ranking as answering), its bounded
text, its arguments, its bounded embedding call, and that it is offered only while the knowledge base
has documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import redis

from bot.config import load_settings
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.documents import Block, Document, Passage
from bot.knowledge.index import Hit
from bot.ops.redis_server import RedisServer
from bot.store.knowledge import KnowledgeStore
from bot.store.pages import Source
from bot.tools import TOOL_NAMES, ToolBox, ToolError
from bot.tools.base import MAX_RESULT, Found
from bot.tools.knowledge import EMBED_SECONDS, MAX_TOP_K, found_text, spec
from testing.fakes.embeddings import FakeEmbeddings

ZONE = ZoneInfo("Asia/Shanghai")
ROTATION = Document(
    "行业轮动月报",
    [Block("核心观点", heading=True), Block("十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业。")],
    source="wechat",
    key="x:rotation",
    url="https://mp.weixin.qq.com/s/rotation",
)
BONDS = Document(
    "可转债策略",
    [Block("可转债双低策略：价格与溢价率之和低于阈值时买入。")],
    "file",
    "bonds.md",
    name="bonds.md",
)

MakeKB = Callable[..., KnowledgeBase]


@pytest.fixture
def make_kb(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[MakeKB]:
    made: list[tuple[KnowledgeBase, redis.Redis]] = []

    def make(**overrides: Any) -> KnowledgeBase:
        settings = load_settings(
            wechat_token="t", redis_url=redis_server.url, openai_api_key="k", **overrides
        )
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        made.append((KnowledgeBase(KnowledgeStore(client), settings), client))
        return made[-1][0]

    yield make
    for kb, client in made:
        kb.close()
        client.close()


def search(kb: KnowledgeBase, arguments: dict[str, Any]) -> Found:
    found = spec(kb).run(arguments)
    assert isinstance(found, Found)
    return found


def test_the_search_finds_what_answering_would_and_shows_title_excerpt_and_source(make_kb: MakeKB) -> None:
    kb = make_kb()
    kb.add(ROTATION)
    kb.add(BONDS)
    rotation = search(kb, {"query": "行业轮动模型推荐超配哪些行业"})
    assert rotation.text == (
        "1 passage(s) of the knowledge base for '行业轮动模型推荐超配哪些行业':\n"
        "[1] 行业轮动月报 › 核心观点\n十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业。\n"
        "source: https://mp.weixin.qq.com/s/rotation"
    )
    bonds = search(kb, {"query": "可转债 双低"})
    assert bonds.text.endswith("溢价率之和低于阈值时买入。\nsource: file bonds.md")
    nothing = search(kb, {"query": "红烧肉怎么做"})
    assert nothing.text == "no passage of the knowledge base is relevant to '红烧肉怎么做'"


def test_the_passages_documents_go_with_the_result_for_the_answers_sources(make_kb: MakeKB) -> None:
    kb = make_kb()
    kb.add(ROTATION)
    kb.add(BONDS)
    assert search(kb, {"query": "行业轮动模型推荐超配哪些行业"}).sources == (
        Source("行业轮动月报", "https://mp.weixin.qq.com/s/rotation"),
    )
    assert search(kb, {"query": "可转债 双低"}).sources == (Source("可转债策略"),)
    assert search(kb, {"query": "红烧肉怎么做"}).sources == ()
    box = ToolBox.enabled(["search_knowledge"], ZONE, kb)
    result = box.call("search_knowledge", '{"query": "可转债 双低"}')
    assert result.outcome == "ok" and result.sources == (Source("可转债策略"),)
    assert box.call("search_knowledge", '{"query": ""}').sources == ()


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        ({}, "missing argument query"),
        ({"query": "  "}, "missing argument query"),
        ({"query": 42}, "missing argument query"),
        ({"query": "行业" * 101}, "too long"),
        ({"query": "行业", "top_k": "3"}, "top_k must be an integer"),
        ({"query": "行业", "top_k": True}, "top_k must be an integer"),
        ({"query": "行业", "top_k": 2.5}, "top_k must be an integer"),
    ],
)
def test_bad_arguments_are_told_to_the_model(
    make_kb: MakeKB, arguments: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ToolError, match=refusal):
        spec(make_kb()).run(arguments)


class Recorder:
    """A knowledge base that records what the tool asked of it."""

    def __init__(self, fails: bool = False) -> None:
        self.asked: list[tuple[str, int | None, float | None]] = []
        self.fails = fails

    def retrieve(
        self, question: str, top_k: int | None = None, embed_timeout: float | None = None
    ) -> list[Hit]:
        if self.fails:
            raise redis.ConnectionError("down")
        self.asked.append((question, top_k, embed_timeout))
        return []

    def has_documents(self) -> bool:
        if self.fails:
            raise redis.ConnectionError("down")
        return True


def test_top_k_is_clamped_and_the_query_tidied() -> None:
    recorder = Recorder()
    run = spec(recorder).run  # type: ignore[arg-type]
    for top_k in (99, 0, -3, 2.0):
        run({"query": " 行业\n轮动 ", "top_k": top_k})
    run({"query": "行业"})
    assert recorder.asked == [
        ("行业 轮动", MAX_TOP_K, EMBED_SECONDS),
        ("行业 轮动", 1, EMBED_SECONDS),
        ("行业 轮动", 1, EMBED_SECONDS),
        ("行业 轮动", 2, EMBED_SECONDS),
        ("行业", 3, EMBED_SECONDS),
    ]


def test_a_failing_knowledge_base_is_an_error_for_the_model_and_not_offered() -> None:
    tool = spec(Recorder(fails=True))  # type: ignore[arg-type]
    with pytest.raises(ToolError, match="cannot be searched right now"):
        tool.run({"query": "行业"})
    assert tool.available is not None and tool.available() is False


def test_the_results_stay_within_the_bound_however_long_the_passages() -> None:
    long = Passage(
        "d1", 0, "很长的段落。" * 500, title="标题" * 100, section="小节" * 100, url="https://x/" + "a" * 500
    )
    hits = [Hit(long, 1.0, 1.0, None, 1.0, True)] * MAX_TOP_K
    text = found_text("查询", hits)
    assert len(text) <= MAX_RESULT and text.count("\n[") == MAX_TOP_K and text.endswith("…")
    assert found_text("查询", hits[:1]).count("很长的段落。") > found_text("查询", hits).count("很长的段落。")


def test_the_question_embedding_is_bounded_and_a_slow_server_leaves_bm25(
    make_kb: MakeKB, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeEmbeddings() as fake:
        kb = make_kb(embedding_model="fake-embed", embedding_base_url=fake.base_url, embedding_timeout=30.0)
        kb.add(ROTATION)
        embedder = kb.embedder
        assert embedder is not None
        timeouts: list[float | None] = []
        real = embedder.embed_query

        def embed_query(text: str, timeout: float | None = None) -> np.ndarray:
            timeouts.append(timeout)
            return real(text, timeout=timeout)

        monkeypatch.setattr(embedder, "embed_query", embed_query)
        assert "超配银行" in search(kb, {"query": "行业轮动模型推荐超配哪些行业"}).text
        fake.fail_status = 503  # the embedding fails: the search goes on with BM25 alone
        assert "超配银行" in search(kb, {"query": "行业轮动模型推荐超配哪些行业"}).text
        assert timeouts == [EMBED_SECONDS, EMBED_SECONDS]
        kb.retrieve("行业轮动")  # answering keeps EMBEDDING_TIMEOUT
        assert timeouts[-1] is None


def test_the_search_is_offered_while_the_knowledge_base_has_documents(make_kb: MakeKB) -> None:
    kb = make_kb()
    box = ToolBox.enabled(list(TOOL_NAMES), ZONE, kb)
    assert list(box.specs) == list(TOOL_NAMES)
    offered = box.offered()
    assert offered is not None and list(offered.specs) == list(TOOL_NAMES[:-1])
    assert offered.call("search_knowledge", '{"query": "x"}').outcome == "unknown"
    doc_id = kb.add(ROTATION).record.id
    assert box.offered() is box
    kb.remove(doc_id)
    assert ToolBox.enabled(["search_knowledge"], ZONE, kb).offered() is None
    assert list(ToolBox.enabled(["calculator"], ZONE, kb).specs) == ["calculator"]
