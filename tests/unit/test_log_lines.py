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


def test_every_line_break_is_escaped_alone_too() -> None:
    """The formatter skips lines without any (the common case): each one alone must still be found."""
    for char, written in [
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\x85", "\\x85"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\\", "\\\\"),
    ]:
        assert format_line(f"a{char}b").endswith(f"content=a{written}b"), repr(char)


def test_the_time_reads_as_loggings_own_within_a_second_and_across_seconds() -> None:
    """The formatter makes a second's text once (two lines per push): each line still gets its own time."""
    ours, standard = TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    for created in (1_796_119_200.001, 1_796_119_200.999, 1_796_119_201.5, 1_796_119_200.25, 1_796_208_000.0):
        record = logging.makeLogRecord({"msg": "x", "levelname": "INFO", "request_id": "-"})
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.formatTime(record) == standard.formatTime(record), created
