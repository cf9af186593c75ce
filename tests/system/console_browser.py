"""What the console's browser tests share: the bot served on loopback at the address its PUBLIC_BASE_URL
names (so a login link opens as it would on a phone), with its job worker; the answer page's Chromium
fixtures (one headless Chromium per module, a phone-sized page per call); and the README's screenshots
(saved only with WXBOT_SCREENSHOTS=docs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app import create_app
from bot.ops.redis_server import free_port
from tests.conftest import Bot, serve, start_worker, stop_bot
from tests.system import test_page_browser as browser

ROOT = Path(__file__).resolve().parents[2]
PHONE = browser.PHONE
chromium = browser.chromium
phone = browser.phone
ADMIN = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


@pytest.fixture
def console_bot(base_config: dict[str, Any], redis_client: redis.Redis) -> Iterator[Bot]:
    """The bot with its job worker, served at the address its PUBLIC_BASE_URL names; ADMIN is admin."""
    port = free_port()
    app = create_app(
        {**base_config, "public_base_url": f"http://127.0.0.1:{port}", "wechat_admin_openids": [ADMIN]}
    )
    bot = Bot(app, serve(app, port), start_worker(app, 4))
    yield bot
    stop_bot(bot)


def sign_in(page: Any, link: str) -> None:
    """Open a login link as the admin does and press its button (opening it spends nothing)."""
    page.goto(link)
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()
    assert "/console/login/" not in page.url  # signed in: on to the console, the link out of the address bar


def shot(page: Any, name: str) -> None:
    """Save docs/console-NAME.png, a screenshot the README shows (WXBOT_SCREENSHOTS=docs)."""
    if folder := os.environ.get("WXBOT_SCREENSHOTS"):
        page.screenshot(path=str(ROOT / folder / f"console-{name}.png"), full_page=True)
