"""The answer page (PUBLIC_BASE_URL) end to end: pushes through the webhook with the loopback fakes of
WeChat and OpenAI, the page and its live state read over HTTP from the bot served on loopback.

How fast the model writes is decided by the test (the fake holds its stream until `release()`), never
by the clock: what the page shows while an answer is still being written is the same on any machine.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests

from bot import texts
from bot.answering.kinds import Made, Prompt, TextKind
from bot.replies import utf8_len
from bot.store.answers import Answer
from bot.store.pages import TOKEN_LENGTH, Source
from testing.fakes.openai_server import FakeOpenAI
from testing.pages import PUBLIC_BASE, PageReader, elements, token_in
from testing.simulator import WeChatSimulator
from tests.conftest import Bot

LONG = "".join(f"第{i}段：这是一个很长的回答，用来测试分页和网页。\n" for i in range(200))
#: a hang guard for loops that wait for a worker (never a timing assertion)
PATIENCE = 30.0


@pytest.fixture
def page_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE)


def reader(bot: Bot) -> PageReader:
    return PageReader(bot.url.removesuffix("/wechat"))


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def visible_text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_a_long_answer_links_its_page_on_its_first_page_and_the_page_holds_all_of_it(
    page_bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(reply=LONG, chunk_size=60)
    sim = page_bot.simulator()
    first = sim.send_text("user-1", "写一篇长文")
    while first.text == texts.STILL_WORKING or first.text is None:  # a slow machine: fetch it
        first = sim.send_text("user-1", "继续")
    assert first.text is not None
    token = token_in(first.text)
    assert token is not None and len(token) == TOKEN_LENGTH
    assert texts.PAGE_LINK_FULL.format(url=f"{PUBLIC_BASE}/a/{token}") + texts.MORE_HINT in first.text
    assert utf8_len(first.text) <= 2048

    # 继续 still reads the rest in chat, page after page, with no second link
    pages = [first.text]
    while pages[-1].endswith(texts.MORE_HINT):
        following = sim.send_text("user-1", "继续").text
        assert following is not None
        pages.append(following)
    assert all(token_in(page) is None for page in pages[1:])
    assert all(utf8_len(page) <= 2048 for page in pages)
    assert "第199段" in pages[-1]

    live = wait_for(lambda: (state := reader(page_bot).state(token))["done"] and state, "the page")
    assert live["state"] == "done" and live["status"] == texts.PAGE_DONE
    html = reader(page_bot).page(token).text
    for index in range(200):
        assert f"第{index}段：这是一个很长的回答" in html
    assert "写一篇长文" in html  # the question


def test_a_slow_answer_links_its_live_page_in_the_last_attempt_and_still_waits_for_the_next_message(
    page_bot: Bot, fake_openai: FakeOpenAI
) -> None:
    # the role chunk, then two chunks of the answer; then the model "pauses" until the test says so
    fake_openai.set_behavior(reply="第一部分，第二部分，最后一部分。", chunk_size=5, hold_after_chunks=3)
    sim = page_bot.simulator()
    delivery = sim.send_text("user-1", "慢慢回答")
    assert delivery.text is not None and len(delivery.attempts) == 3
    token = token_in(delivery.text)
    assert token is not None
    url = f"{PUBLIC_BASE}/a/{token}"
    assert delivery.text == texts.STILL_WORKING_LINK.format(url=url)

    # the page shows the part written so far, and says it is being written
    page = reader(page_bot)
    state = wait_for(lambda: (live := page.state(token))["answer"] and live, "the first text on the page")
    assert state["state"] == "writing" and not state["done"]
    assert "第一部分，第二" in visible_text(state["answer"]) and "最后" not in visible_text(state["answer"])
    html = page.page(token)
    assert html.status_code == 200 and "第一部分，第二" in html.text
    assert texts.PAGE_WRITING in html.text
    assert '<meta http-equiv="refresh"' in html.text  # without script, it reloads itself meanwhile
    # a poll that has seen this version gets "nothing new" without a body
    assert page.live(token, version=state["v"]).status_code == 204

    fake_openai.release()
    done = wait_for(lambda: (live := page.state(token))["done"] and live, "the whole answer")
    assert "第一部分，第二部分，最后一部分。" in visible_text(done["answer"])
    assert '<meta http-equiv="refresh"' not in page.page(token).text

    # the answer waits for the next message, as without pages
    late = sim.send_text("user-1", "继续")
    question = texts.LATE_ANSWER_PREFIX.format(question="慢慢回答")
    assert late.text == question + "第一部分，第二部分，最后一部分。"


def test_unknown_malformed_and_expired_tokens_are_404(
    page_bot: Bot, fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    page = reader(page_bot)
    for token in ("A" * TOKEN_LENGTH, "short", "x" * 100, "..%2F..%2Fetc", "<script>"):
        response = page.page(token)
        assert response.status_code == 404, token
        assert response.headers["X-Robots-Tag"].startswith("noindex")
        assert page.live(token).status_code == 404

    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    first = page_bot.simulator().send_text("user-1", "长")
    found = token_in(first.text)
    assert found is not None and page.page(found).status_code == 200
    wait_for(lambda: page.state(found)["done"], "the whole answer")
    token = found
    # the token lives exactly as long as the answer
    [answer_key] = [str(key) for key in redis_client.keys("wxbot:ans:*") if str(key).count(":") == 2]
    token_key = f"wxbot:page:{token}"
    assert abs(redis_client.pttl(token_key) - redis_client.pttl(answer_key)) < 2000
    # and not the answer id
    assert token not in answer_key
    redis_client.delete(answer_key)  # the answer expired (ANSWER_TTL)
    assert page.page(token).status_code == 404
    assert page.live(token).status_code == 404


def test_a_live_poll_with_a_version_that_is_no_number_gets_the_state(
    page_bot: Bot, fake_openai: FakeOpenAI
) -> None:
    """Not a 500: "²" is a digit to str.isdigit and not to int(), 5,000 digits are too many for int()."""
    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    token = token_in(page_bot.simulator().send_text("user-1", "长").text)
    assert token is not None
    for version in ("²", "9" * 5000, "-1", "abc", ""):
        response = requests.get(reader(page_bot).url(token) + "/live", params={"v": version}, timeout=10)
        assert response.status_code == 200, version
        assert "answer" in response.json()


def test_markdown_in_an_answer_cannot_run_script_on_the_page(page_bot: Bot, fake_openai: FakeOpenAI) -> None:
    hostile = (
        "# 标题\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        "[点我](javascript:alert(3)) [也点我](JaVaScRiPt:alert(4))\n\n"
        "公式 $\\text{<script>alert(5)</script>}$ 和 ![图](https://evil.example/x.png)\n\n"
        '<a href="javascript:alert(6)" onclick="alert(7)">a</a>\n\n'
        "```html\n<script>alert(8)</script>\n```\n\n" + LONG
    )
    fake_openai.set_behavior(reply=hostile, chunk_size=80)
    first = page_bot.simulator().send_text("user-1", "攻击")
    token = token_in(first.text)
    assert token is not None
    page = reader(page_bot)
    wait_for(lambda: page.state(token)["done"], "the whole answer")
    response = page.page(token)
    html = response.text
    assert_inert(html.split("<body>", 1)[1])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as the text it is
    assert 'href="https://evil.example/x.png"' in html  # an image from elsewhere: a link, never loaded
    # the page's own script is a file of the bot's, and the policy allows nothing inline
    scripts = [attrs for tag, attrs in elements(html) if tag == "script"]
    assert len(scripts) == 1 and scripts[0]["src"].startswith("/a/assets/page.js?v=")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Robots-Tag"].startswith("noindex")
    assert response.headers["Cache-Control"] == "no-store"
    assert '<meta name="robots" content="noindex' in html
    assert_inert(page.state(token)["answer"])


def assert_inert(html: str) -> None:
    """No element that runs script, no event handler, no link or source but http(s)/mailto."""
    found = elements(html)
    assert found, "no HTML at all"
    for tag, attrs in found:
        assert tag not in ("script", "img", "iframe", "object", "embed", "style", "link", "meta", "form"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                assert value.startswith(("https://", "http://", "mailto:")), (tag, name, value)


def test_the_page_shows_that_answer_and_its_question_and_nothing_else(
    page_bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(reply=lambda messages: "回答：" + str(messages[-1]["content"]) + "\n" + LONG)
    sim = page_bot.simulator()
    mine = sim.send_text("alice", "爱丽丝的秘密问题")
    sim.send_text("bob", "鲍勃的问题")
    token = token_in(mine.text)
    assert token is not None
    page = reader(page_bot)
    wait_for(lambda: page.state(token)["done"], "the answer")
    html = page.page(token).text
    assert "爱丽丝的秘密问题" in html
    assert "鲍勃" not in html and "alice" not in html and "bob" not in html


def test_a_one_page_answer_with_code_links_its_formatted_page(page_bot: Bot, fake_openai: FakeOpenAI) -> None:
    code = "用这个：\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    fake_openai.set_behavior(reply=code)
    reply = page_bot.simulator().send_text("user-1", "代码")
    assert reply.text is not None
    token = token_in(reply.text)
    assert token is not None
    assert reply.text.endswith(texts.PAGE_LINK_FORMATTED.format(url=f"{PUBLIC_BASE}/a/{token}"))
    assert "print('hi')" in reply.text and "```" not in reply.text and "a: b" not in reply.text
    html = reader(page_bot).page(token).text
    assert '<pre class="code"><code class="language-python">' in html and "<table>" in html


def test_a_plain_short_answer_gets_no_link(page_bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="**你好**，我是助手。")
    assert page_bot.simulator().send_text("user-1", "你好").text == "你好，我是助手。"


def test_without_public_base_url_nothing_changes(
    bot: Bot, fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    fake_openai.set_behavior(reply=LONG, chunk_size=60)
    sim: WeChatSimulator = bot.simulator()
    first = sim.send_text("user-1", "长")
    assert first.text is not None and "/a/" not in first.text and "全文" not in first.text
    assert reader(bot).page("A" * TOKEN_LENGTH).status_code == 404
    assert reader(bot).page("A" * TOKEN_LENGTH).headers["Content-Type"].startswith("text/plain")
    assert redis_client.keys("wxbot:page:*") == [] and redis_client.keys("wxbot:ans:*:live") == []

    fake_openai.set_behavior(reply="慢", hold_after_chunks=1)
    assert sim.send_text("user-1", "慢的问题").text == texts.STILL_WORKING
    fake_openai.release()


def test_the_pages_assets_are_the_bots_own_and_cacheable(page_bot: Bot) -> None:
    base = reader(page_bot).server
    css = requests.get(f"{base}/a/assets/page.css", timeout=10)
    js = requests.get(f"{base}/a/assets/page.js", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert ".hl-k" in css.text  # the code colours, generated by Pygments
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    assert "http" not in re.sub(r"//.*", "", js.text)  # nothing from elsewhere
    etag = {"If-None-Match": css.headers["ETag"]}
    again = requests.get(f"{base}/a/assets/page.css", headers=etag, timeout=10)
    assert again.status_code == 304
    assert requests.get(f"{base}/a/assets/other.js", timeout=10).status_code == 404


def test_the_knowledge_bases_sources_are_listed_on_the_page(
    page_bot: Bot, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = (
        Source("行业轮动月报", "https://mp.weixin.qq.com/s/rotation"),
        Source("内部文件.pdf"),
        Source("坏链接", "javascript:alert(1)"),
    )
    asked = TextKind.prepare

    def with_sources(self: TextKind, answer: Answer) -> Prompt | Made:
        prompt = asked(self, answer)
        assert isinstance(prompt, Prompt)
        return dataclasses.replace(prompt, sources=sources)

    monkeypatch.setattr(TextKind, "prepare", with_sources)
    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    token = token_in(page_bot.simulator().send_text("user-1", "轮动策略").text)
    assert token is not None
    page = reader(page_bot)
    live = wait_for(lambda: (state := page.state(token))["done"] and state, "the whole answer")
    links = [attrs["href"] for tag, attrs in elements(live["sources"]) if tag == "a"]
    assert links == ["https://mp.weixin.qq.com/s/rotation"]
    assert "内部文件.pdf" in live["sources"] and "坏链接" in live["sources"]
    html = page.page(token).text
    assert texts.PAGE_SOURCES in html and "行业轮动月报" in html


def test_the_page_hides_the_sensitive_words_the_chat_hides(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """Also inside marks (`**某某**公司`), and a masked word turns no text bold (`*` is a mark)."""
    bot = make_bot(public_base_url=PUBLIC_BASE, sensitive_words=["某某公司", "坏词"])
    answer = "这家**某某**公司的产品。坏词很多，另一个坏词也是。\n\n```\n代码里的坏词\n```\n" + LONG
    fake_openai.set_behavior(reply=answer, chunk_size=60)
    first = bot.simulator().send_text("user-1", "介绍一下")
    while first.text == texts.STILL_WORKING or first.text is None:
        first = bot.simulator().send_text("user-1", "继续")
    assert first.text is not None and "某某" not in first.text and "坏词" not in first.text
    token = token_in(first.text)
    assert token is not None
    wait_for(lambda: reader(bot).state(token)["done"], "the page")
    html = reader(bot).page(token).text
    shown = visible_text(html)
    assert "某某" not in shown and "公司" not in shown.split("的产品")[0] and "坏词" not in shown
    assert "很多，另一个" in shown and "<strong>很多" not in html  # the words hidden, nothing made bold


def test_an_answer_failed_outside_its_run_shows_failed_on_its_page_and_to_its_poll(page_bot: Bot) -> None:
    """An abandoned answer (its job lost) or a run killed by its time limit leaves the live record at
    `writing`: the page and a poll that has seen that record say the answer failed, not 正在写… forever."""
    answers, pages = page_bot.runtime.answers, page_bot.runtime.pages
    answer_id = answers.create("user-1", "一个问题", owner="push", reserved_for=0, delivery="passive")
    token = pages.token_for(answer_id)
    lease = answers.take_lease(answer_id, 30_000)
    assert token is not None and lease is not None
    pages.write(answer_id, lease, text="写了一半的回答", state="writing", reasoning="", error="")
    answers.release_lease(answer_id, lease)  # the run is gone, its record still says "writing"
    page = reader(page_bot)
    written = page.state(token)
    assert written["state"] == "writing" and page.live(token, written["v"]).status_code == 204

    answer = answers.get(answer_id)
    assert answer is not None
    answers.set_status(answer, "failed", texts.LLM_TIMEOUT)  # as ABANDONED_AFTER does, on the next push
    polled = page.live(token, written["v"])
    assert polled.status_code == 200
    told = polled.json()
    assert (told["state"], told["status"], told["done"]) == ("failed", texts.PAGE_FAILED, True)
    assert told["error"] == texts.LLM_TIMEOUT and "写了一半的回答" in told["answer"]
    html = page.page(token).text
    assert f'<span id="status" class="status status-failed">{texts.PAGE_FAILED}</span>' in html
    assert 'data-state="failed"' in html and texts.PAGE_WRITING not in html and texts.LLM_TIMEOUT in html
