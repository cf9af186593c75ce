"""gunicorn's access log without a second line for a push: `logger_class` in deploy/gunicorn.conf.py.

The webhook writes one line for each delivery of a push (bot/webhook.py: who, which attempt, what went
back, how long); gunicorn's access line for the same request said less and cost about as much again
(formatting every header into its atoms, a second write). A request whose handler logged it marks its
WSGI environ (`APP_LOGGED`); every other request — the URL check, a refused push, the console, the
answer pages, /healthz — keeps its access line.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from bot.logs import APP_LOGGED


class AccessLogger(Logger):
    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if environ.get(APP_LOGGED):
            return
        super().access(resp, req, environ, request_time)
