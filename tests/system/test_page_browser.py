"""The answer page in a real headless Chromium (Debian's `chromium`, driven by Playwright's client with
no browser of its own): the code block highlighted, the table, the formula typeset, the live updates,
and the page still readable with script blocked.

Skips when Chromium is not installed (`make test` installs it as root: deploy/ensure-test-tools.sh).
WXBOT_SCREENSHOT=docs/answer-page.png saves the screenshot the README shows.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.pages import PUBLIC_BASE, PageReader, token_in
from tests.conftest import Bot

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: what works in a container as root, offline: no sandbox, no GPU, nothing fetched in the background
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: a phone's screen (WeChat's in-app browser)
PHONE = {"width": 390, "height": 844}
#: a hang guard for the browser's waits (ms), never a timing assertion
PATIENCE_MS = 30_000

ANSWER = """## 求根公式

一元二次方程 $ax^2+bx+c=0$（$a \\ne 0$）的根：

$$
x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}
$$

```python
import math

def roots(a: float, b: float, c: float) -> tuple[float, float]:
    d = math.sqrt(b * b - 4 * a * c)  # 判别式
    return (-b + d) / (2 * a), (-b - d) / (2 * a)
```

| 判别式 | 根的情况 |
|---|---|
| Δ > 0 | 两个不等实根 |
| Δ = 0 | 两个相等实根 |
| Δ < 0 | 没有实根 |
"""
THOUGHT = "用户要求根公式。先写公式，再给代码和一张判别式的表。"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (bash deploy/ensure-test-tools.sh installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def open_page(**options: Any) -> Any:
        context = chromium.new_context(viewport=PHONE, locale="zh-CN", **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(PATIENCE_MS)
        page.problems = []
        page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE)


def reader(bot: Bot) -> PageReader:
    return PageReader(bot.url.removesuffix("/wechat"))


def finished_answer(bot: Bot, fake_openai: FakeOpenAI) -> str:
    """Ask; return the page's token once the whole answer is on it."""
    fake_openai.set_behavior(reply=ANSWER, reasoning=THOUGHT, chunk_size=40)
    reply = bot.simulator().send_text("user-1", "一元二次方程的求根公式是什么？请给代码。")
    token = token_in(reply.text)
    assert token is not None, reply.text
    deadline = time.monotonic() + PATIENCE_MS / 1000
    while not reader(bot).state(token)["done"]:  # a slow machine: the link came with the last attempt
        assert time.monotonic() < deadline, "the answer was never finished"
        time.sleep(0.05)
    return token


def test_the_page_renders_the_code_block_the_table_and_the_formula(
    page_bot: Bot, fake_openai: FakeOpenAI, phone: Callable[..., Any]
) -> None:
    token = finished_answer(page_bot, fake_openai)
    page = phone()
    page.goto(reader(page_bot).url(token))
    page.wait_for_selector('main[data-state="done"]')

    # the code block: highlighted by the bot's stylesheet, its lines kept
    keyword = page.locator("pre.code .hl-kn").first
    assert keyword.inner_text() == "import"
    assert keyword.evaluate("e => getComputedStyle(e).color") != page.locator("pre.code").evaluate(
        "e => getComputedStyle(e).color"
    )
    assert "def roots(a: float" in page.locator("pre.code").inner_text()

    # the table: three rows under its header, laid out
    assert page.locator("table th").all_inner_texts() == ["判别式", "根的情况"]
    assert page.locator("table tbody tr").count() == 3
    assert page.locator("table").bounding_box()["height"] > 60

    # the formula: MathML typeset by the browser — the fraction is taller than a line of text
    formula = page.locator('math[display="block"]')
    assert formula.locator("mfrac").count() == 1
    fraction = formula.locator("mfrac").bounding_box()
    line = page.locator(".answer p").first.bounding_box()
    assert fraction["height"] > 1.5 * page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert line["height"] > 0

    # the thinking, collapsed; the question; no error of any kind (a CSP violation is one)
    assert page.locator("details#reasoning").get_attribute("open") is None
    assert page.locator("#reasoning-body").is_hidden()
    assert "求根公式是什么" in page.locator(".question-text").inner_text()
    assert page.problems == []

    if target := os.environ.get("WXBOT_SCREENSHOT"):
        page.locator("details#reasoning summary").click()
        page.screenshot(path=str(ROOT / target), full_page=True)


def test_the_page_updates_live_while_the_answer_is_written(
    page_bot: Bot, fake_openai: FakeOpenAI, phone: Callable[..., Any]
) -> None:
    # the role chunk and two chunks of the answer; then the model pauses until the test releases it
    fake_openai.set_behavior(reply="第一句，正在写。第二句写完了！", chunk_size=5, hold_after_chunks=3)
    delivery = page_bot.simulator().send_text("user-1", "慢慢写")
    token = token_in(delivery.text)
    assert token is not None and delivery.text is not None and delivery.text.startswith("回答还在生成中")

    page = phone()
    page.goto(reader(page_bot).url(token))
    page.wait_for_function("document.querySelector('#answer').innerText.includes('第一句，正在')")
    assert page.locator("#status").inner_text() == texts.PAGE_WRITING
    assert "第二句" not in page.locator("#answer").inner_text()
    page.evaluate("window.stillTheSamePage = true")  # a reload would lose it

    fake_openai.release()
    page.wait_for_selector('main[data-state="done"]')
    assert page.locator("#answer").inner_text().strip() == "第一句，正在写。第二句写完了！"
    assert page.locator("#status").inner_text() == texts.PAGE_DONE
    assert page.evaluate("window.stillTheSamePage") is True  # updated in place by the page's script
    assert page.problems == []


def test_the_page_reads_with_script_blocked(
    page_bot: Bot, fake_openai: FakeOpenAI, phone: Callable[..., Any]
) -> None:
    token = finished_answer(page_bot, fake_openai)
    page = phone(java_script_enabled=False)
    page.goto(reader(page_bot).url(token))
    assert page.locator("pre.code .hl-kn").first.inner_text() == "import"
    assert page.locator("table tbody tr").count() == 3
    assert page.locator('math[display="block"] mfrac').count() == 1
    assert page.locator("#status").inner_text() == texts.PAGE_DONE


#: a small phone (iPhone SE, mini): the narrowest screen the page is laid out for
NARROW = {"width": 375, "height": 667}
LONG_INLINE = "$" + " + ".join(f"a_{{{n}}}" for n in range(1, 15)) + "$"


def test_a_long_inline_formula_scrolls_in_its_own_box_on_a_small_phone(
    page_bot: Bot, fake_openai: FakeOpenAI, phone: Callable[..., Any]
) -> None:
    """Only a block formula scrolled: a long inline one made the whole page wider than the phone."""
    fake_openai.set_behavior(reply=f"行内公式 {LONG_INLINE} 结束，短的 $x^2$ 留在行里。")
    reply = page_bot.simulator().send_text("user-1", "求和")
    token = token_in(reply.text)
    assert token is not None, reply.text
    page = phone()
    page.set_viewport_size(NARROW)
    page.goto(reader(page_bot).url(token))
    page.wait_for_selector('main[data-state="done"]')
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    long, short = page.locator(".math.inline").all()
    assert long.evaluate("e => e.scrollWidth > e.clientWidth")  # the formula is all there, to scroll
    assert long.bounding_box()["x"] + long.bounding_box()["width"] <= NARROW["width"]
    # the short formula still sits on its line of text
    line = page.locator(".answer p").bounding_box()
    box = short.bounding_box()
    assert line["y"] <= box["y"] and box["y"] + box["height"] <= line["y"] + line["height"]
    assert page.problems == []
