"""The operator console in a real headless Chromium (Debian's `chromium`, driven by Playwright's client
with no browser of its own), on a phone's screen: log in with the link the chat gives, open a
follower's conversation, change the system prompt and see the next answer use it, log out.

The bot is served on loopback with PUBLIC_BASE_URL set to its own address, so the chat's link opens as
it would on a phone. Skips when Chromium is not installed (`make test` installs it as root).
WXBOT_SCREENSHOTS=docs saves docs/console-*.png, the screenshots the README shows.
"""

from __future__ import annotations

import re
from typing import Any

from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import Bot
from tests.system import console_browser as served
from tests.system.console_browser import ADMIN, PHONE, shot, sign_in

FOLLOWER = "o6_bmasdasdsad6_2sgVt7hMZOPfL"
#: the fixtures the tests take (the bot served on loopback, Chromium, a phone-sized page)
console_bot, chromium, phone = served.console_bot, served.chromium, served.phone


def test_log_in_read_a_conversation_and_change_the_system_prompt(
    console_bot: Bot, fake_openai: FakeOpenAI, phone: Any
) -> None:
    chat = console_bot.simulator()
    assert chat.send_text(FOLLOWER, "明天北京天气怎么样？").text == "echo: 明天北京天气怎么样？"
    assert chat.send_text(FOLLOWER, "那后天呢？").text == "echo: 那后天呢？"
    reply = chat.send_text(ADMIN, "/console").text or ""
    link = re.search(r"http://127\.0\.0\.1:\d+/console/login/[\w-]+", reply)
    assert link, reply
    base = link.group(0).split("/console/", 1)[0]

    page = phone()
    page.goto(link.group(0))
    shot(page, "login")
    sign_in(page, link.group(0))  # a second opening: the first spent nothing
    page.goto(f"{base}/console/users")
    assert page.locator("nav.nav a.here").inner_text() == "会话"
    # every tab whole on a narrower phone too (at 375 px the last one was cut at the edge of a strip that
    # scrolled sideways, with nothing to say that it did)
    page.set_viewport_size({"width": 360, "height": PHONE["height"]})
    for tab in page.locator("nav.nav a").all():
        box = tab.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, tab.inner_text()
    page.set_viewport_size(PHONE)
    assert FOLLOWER in page.locator("ul.rows").inner_text()
    shot(page, "users")

    page.locator(f"a:has-text('{FOLLOWER}')").click()
    page.wait_for_selector("ul.chat")
    bubbles = page.locator("ul.chat .bubble").all_inner_texts()
    assert bubbles == ["明天北京天气怎么样？", "echo: 明天北京天气怎么样？", "那后天呢？", "echo: 那后天呢？"]
    user_bubble = page.locator("ul.chat li.user .bubble").first.bounding_box()
    assert user_bubble["x"] + user_bubble["width"] > PHONE["width"] * 0.8  # the follower's side: right
    shot(page, "conversation")

    page.locator("nav.nav a:has-text('设置')").click()
    form = page.locator("section#system_prompt form")
    form.locator("textarea").fill("你是天气助手，回答要简短。")
    form.locator("button:has-text('保存')").click()
    page.wait_for_selector("p.notice")
    assert page.locator("section#system_prompt textarea").input_value() == "你是天气助手，回答要简短。"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    shot(page, "settings")

    assert chat.send_text(FOLLOWER, "大后天呢？").text == "echo: 大后天呢？"
    system = fake_openai.chat_requests()[-1]["messages"][0]
    assert system == {"role": "system", "content": "你是天气助手，回答要简短。"}

    page.goto(f"{base}/console/audit")
    assert "console:settings.system_prompt" in page.locator("main").inner_text()
    page.locator("header form.logout button").click()
    page.wait_for_url(re.compile(r".*/console/welcome$"))
    assert "make console-link" in page.locator("main").inner_text()
    page.goto(f"{base}/console/settings")
    assert page.url.endswith("/console/welcome")  # logged out
    assert page.problems == []  # no script error, no Content-Security-Policy violation
