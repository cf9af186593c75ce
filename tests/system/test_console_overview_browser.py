"""The console's overview in a real headless Chromium on a phone's screen: after real traffic through the
webhook (and some earlier days written through the same stores with their clocks moved back), the page
shows today's figures and every chart, fits the screen, and breaks no rule of its Content-Security-
Policy (no script runs, no style attribute is refused).

Skips when Chromium is not installed (`make test` installs it as root).
WXBOT_SCREENSHOTS=docs saves docs/console-overview.png, the screenshot the README shows.
"""

from __future__ import annotations

import time
from typing import Any

from testing.console import login_path
from tests.conftest import Bot
from tests.system import console_browser as served
from tests.system.console_browser import ADMIN, PHONE, shot, sign_in

FOLLOWERS = [f"o6_bmasdasdsad6_2sgVt7hMZOP{n:02d}" for n in range(4)]
DAY = 86400
#: the fixtures the tests take (the bot served on loopback, Chromium, a phone-sized page)
console_bot, chromium, phone = served.console_bot, served.chromium, served.phone


def earlier_days(bot: Bot, days: int = 12) -> None:
    """Some history, written by the stores themselves with their clocks set back `days`…1 days."""
    stats, metrics = bot.runtime.stats, bot.runtime.metrics
    now = time.time()
    try:
        for back in range(days, 0, -1):
            stats.clock = metrics.clock = lambda back=back: now - back * DAY
            for n in range(3 + back % 5):
                stats.seen(FOLLOWERS[n % len(FOLLOWERS)])
                metrics.inc("pages_delivered", path="attempt_1" if n % 3 else "attempt_2")
                metrics.observe("first_page_seconds", 0.8 + n * 0.7)
                metrics.observe("llm_latency_seconds", 1.5 + n, outcome="ok")
            if back % 4 == 0:
                metrics.inc("pages_delivered", path="next_message")
                metrics.undelivered(f"ans-{back}", FOLLOWERS[0], "late: not ready")
    finally:
        stats.clock = metrics.clock = time.time


def test_the_overview_on_a_phone(console_bot: Bot, phone: Any) -> None:
    earlier_days(console_bot)
    chat = console_bot.simulator()
    for n, follower in enumerate(FOLLOWERS):
        for question in ("你好", "今天天气怎么样？")[: 1 + n % 2]:
            assert chat.send_text(follower, question).text == f"echo: {question}"

    page = phone()
    base = console_bot.url.removesuffix("/wechat")
    sign_in(page, base + login_path(console_bot.app, ADMIN))
    page.goto(f"{base}/console/")
    assert page.locator("nav.nav a.here").inner_text() == "概览"
    figures = page.locator(".figures .figure .value").all_inner_texts()
    assert figures[:2] == ["6", "4"]  # today's messages and followers

    charts = page.locator("svg.chart")
    assert charts.count() >= 10
    for index in range(charts.count()):
        box = charts.nth(index).bounding_box()
        assert box is not None and 0 < box["width"] <= PHONE["width"] and box["height"] > 50
    assert page.locator("#chart-hour-messages rect").count() >= 1
    assert "第1次请求" in page.locator("#chart-deliveries").inner_html()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    assert page.locator("table.machinery").inner_text().count("在线") >= 1
    assert page.problems == []  # no script error, no Content-Security-Policy violation
    shot(page, "overview")
