"""Logging shared by the web tier, the workers and the launcher: text or JSON lines, with the
request id of the push being handled on every line logged while handling it.

Every process logs through one handler on the root logger, to stderr, so each event is one line in
the chosen format: `configure_logging` replaces the console handler that was there (Dramatiq's
command line installs one with `logging.basicConfig` in each of its processes), and gunicorn's error
and access logs propagate to the root logger (`logconfig_dict` in deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import time

from bot.config import Settings

#: set in a request's WSGI environ when the app wrote that request's log line itself (a push's delivery):
#: gunicorn then writes no access line for it (bot/access_log.py)
APP_LOGGED = "bot.logged"

#: the id of the push being handled in this thread ("-" outside a request)
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={...}` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {
            "time": created.isoformat(timespec="milliseconds"),  # 2026-12-01T11:20:50.123+00:00
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s [%(request_id)s] %(message)s"


#: what a log reader may take for the end of a line, and how it is written instead
_LINE_BREAKS = str.maketrans(
    {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
#: any of those: most lines have none, and finding that out is ten times cheaper than `translate`
_ANY_LINE_BREAK = re.compile("[\\\\\n\r\x85\u2028\u2029]")


class TextFormatter(logging.Formatter):
    """One line per event: line breaks inside a message (a follower's text, with LOG_MESSAGE_CONTENT)
    are escaped, so that nobody can write a line that looks like the bot's own. A traceback keeps its
    lines: it follows the event's line, and comes from the code."""

    #: (second, its text): the web tier writes two lines per push, mostly in the same second
    _second: tuple[int, str] = (-1, "")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return line.translate(_LINE_BREAKS) if _ANY_LINE_BREAK.search(line) else line

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default time (2026-12-01 11:20:50,123), its strftime done once per second."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime(self.default_time_format, self.converter(second)))
        return f"{cached[1]},{int(record.msecs):03d}"  # logging's default_msec_format, '%s,%03d'


#: a console login link's token, and an answer page's, in a request line (gunicorn's and werkzeug's access
#: logs): a link checker's HEAD leaves a login link valid, an answer page's link opens the answer, and a log
#: file is read by more people than the chat (the page's own files, /a/assets/…, are not tokens)
_TOKENS = re.compile(r"(/console/login/|(?:^|[\s\"'=]|https?://[^\s/\"']+)/a/(?!assets/))[^\s\"'?&/]+")


class RedactLinks(logging.Filter):
    """Rewrites a record whose text carries a console login link (bot/console/auth.py) or an answer
    page's link (bot/pages/links.py), the token out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/console/login/" in message or "/a/" in message:
            record.msg, record.args = _TOKENS.sub(r"\1***", message), None
        return True


def console_handler(log_format: str = "text") -> logging.Handler:
    """The handler every process logs through: stderr, `text` or `json` lines, with the request id.

    Also the handler factory of gunicorn's `logconfig_dict` (deploy/gunicorn.conf.py).
    """
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactLinks())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    return handler


def _is_console(handler: logging.Handler) -> bool:
    """A plain stream handler: ours, or the one `logging.basicConfig` installs (Dramatiq's command
    line does, in each of its processes). Not a file handler, nor a test's capture handler."""
    return type(handler) is logging.StreamHandler


def configure_logging(settings: Settings) -> None:
    """One console handler on the root logger, in LOG_FORMAT: it replaces the console handler that
    was there instead of adding a second one (which would print every event twice)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if _is_console(h)]:
        root.removeHandler(old)
    root.addHandler(console_handler(settings.log_format))
    root.setLevel(settings.log_level.upper())
