"""The console's knowledge-base page in a real headless Chromium (Debian's `chromium`, driven by
Playwright's client), on a phone's screen: log in, upload a PDF through the real form, see it listed,
find its passage with the search box, then ask the bot and get an answer grounded in it.

Skips when Chromium is not installed (`make test` installs it as root).
WXBOT_SCREENSHOTS=docs saves docs/console-knowledge.png, the screenshot the README shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testing.console import login_path
from testing.fakes.openai_server import FakeOpenAI
from testing.knowledge import Spec, write
from tests.conftest import Bot
from tests.system import console_browser as served
from tests.system.console_browser import ADMIN, PHONE, shot, sign_in

SPEC = Spec(
    "红利策略季报",
    [
        (
            "核心观点",
            ["第四季度红利策略建议超配公用事业、银行和高速公路三个板块，股息率中位数为百分之五点二。"],
        ),
        ("风险提示", ["利率快速上行时红利资产可能跑输，历史表现不代表未来。"]),
    ],
)
QUESTION = "红利策略建议超配哪些板块？"
#: the fixtures the tests take (the bot served on loopback, Chromium, a phone-sized page)
console_bot, chromium, phone = served.console_bot, served.chromium, served.phone


def test_upload_a_document_through_the_form_and_find_it(
    console_bot: Bot, fake_openai: FakeOpenAI, phone: Any, tmp_path: Path
) -> None:
    base = console_bot.url.removesuffix("/wechat")
    page = phone()
    sign_in(page, base + login_path(console_bot.app, ADMIN))
    page.goto(f"{base}/console/kb")
    assert page.locator("nav.nav a.here").inner_text() == "知识库"
    assert "知识库是空的" in page.locator("main").inner_text()

    page.locator("section#upload input[type=file]").set_input_files(
        str(write(SPEC, tmp_path / "红利策略.pdf"))
    )
    page.locator("section#upload button[type=submit]").click()
    page.wait_for_selector("p.notice")
    assert page.locator("p.notice").inner_text() == "已加入「红利策略季报」：1 个段落。"
    listed = page.locator("ul.documents li")
    assert listed.count() == 1
    assert "红利策略季报" in listed.inner_text() and "文件 红利策略.pdf" in listed.inner_text()

    page.locator("section#search input[name=q]").fill(QUESTION)
    page.locator("section#search button[type=submit]").click()
    page.wait_for_selector("ol.results li")
    first = page.locator("ol.results li").first
    assert "采用" in first.inner_text() and "超配公用事业、银行和高速公路" in first.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    shot(page, "knowledge")
    assert page.problems == []  # no script error, no Content-Security-Policy violation

    fake_openai.set_behavior(reply="建议超配公用事业、银行和高速公路。")
    reply = console_bot.simulator().send_text("follower", QUESTION).text
    assert reply == "建议超配公用事业、银行和高速公路。\n\n来源：\n1. 红利策略季报"


#: a small phone (iPhone SE, mini)
NARROW = {"width": 375, "height": 667}
LONG_NAME = "report_" + "x" * 80 + ".md"
LONG_TITLE = "标题_" + "T" * 90
LONG_URL = "https://example.com/" + "p" * 150


def test_long_titles_file_names_and_links_stay_inside_a_small_phone(
    console_bot: Bot, phone: Any, tmp_path: Path
) -> None:
    """Words without spaces (a file name, a title, a link in a passage) made the page 1628 px wide."""
    base = console_bot.url.removesuffix("/wechat")
    page = phone()
    page.set_viewport_size(NARROW)
    sign_in(page, base + login_path(console_bot.app, ADMIN))
    document = tmp_path / LONG_NAME
    document.write_text(f"# {LONG_TITLE}\n\n行业轮动模型推荐 {LONG_URL} 更多内容\n", encoding="utf-8")
    page.goto(f"{base}/console/kb")
    page.locator("section#upload input[type=file]").set_input_files(str(document))
    page.locator("section#upload button[type=submit]").click()
    page.wait_for_selector("p.notice")
    assert LONG_TITLE in page.locator("p.notice").inner_text()
    assert LONG_NAME in page.locator("ul.documents").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]

    page.goto(f"{base}/console/kb?q=行业轮动模型推荐")
    assert LONG_URL in page.locator("ol.results li").first.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    assert page.problems == []
