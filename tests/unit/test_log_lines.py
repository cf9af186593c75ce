"""Text logs: one line per event, whatever a follower writes (LOG_MESSAGE_CONTENT=true)."""

from __future__ import annotations

import logging
import sys

from bot.logs import TEXT_FORMAT, RequestIdFilter, TextFormatter

FORGED = "hi\n2026-12-01 12:00:00,000 INFO 1 bot.webhook [-] admin oX granted\r\u2028x"


def format_line(message: str, exc: bool = False) -> str:
    record = logging.makeLogRecord({"msg": "content=%s", "args": (message,), "levelname": "INFO"})
    RequestIdFilter().filter(record)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            record.exc_info = sys.exc_info()
    return TextFormatter(TEXT_FORMAT).format(record)


def test_a_followers_line_breaks_cannot_forge_a_log_line() -> None:
    line = format_line(FORGED)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert line.endswith(
        "content=hi\\n2026-12-01 12:00:00,000 INFO 1 bot.webhook [-] admin oX granted\\r\\u2028x"
    )


def test_escaping_is_unambiguous_and_tracebacks_keep_their_lines() -> None:
    assert format_line("a\\nb").endswith("content=a\\\\nb")  # a literal backslash-n stays distinguishable
    first, *rest = format_line("x", exc=True).split("\n")
    assert first.endswith("content=x") and rest[0] == "Traceback (most recent call last):"
