"""LOG_LEVEL=DEBUG does not put the access_token in the logs: the HTTP libraries' lines are redacted."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from testing.fakes.wechat_api import FakeWeChatAPI
from tests.conftest import Bot


def test_debug_logs_of_calls_to_wechat_carry_no_access_token(
    make_bot: Callable[..., Bot], fake_wechat: FakeWeChatAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: urllib3 logged `POST /cgi-bin/message/custom/send?access_token=TOKEN_… 200` at DEBUG."""
    bot = make_bot(with_worker=False, log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    bot.runtime.wechat.send_text("user-1", "hello")
    token = fake_wechat.current_token
    assert token and fake_wechat.sent_texts("user-1") == ["hello"]
    lines = [record.getMessage() for record in caplog.records]
    assert any("custom/send?access_token=***" in line for line in lines), lines  # the line is there
    assert not [line for line in lines if token in line]
    assert token not in caplog.text
