"""gunicorn settings for the web tier: `gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'`.

Each push may hold its request for up to ~5.5 s (the 5-second logic keeps unanswered attempts
open past WeChat's timeout), so the web tier needs many threads, not many processes: gthread
workers with WEB_THREADS threads each hold hundreds of waiting requests on two cores.

The project's `.env` is read from the project directory whatever the current directory is
(a process manager may start gunicorn elsewhere); variables already set in the environment
(systemd's EnvironmentFile, Docker's env_file) win over it.
"""

import os
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent
load_dotenv(ROOT / ".env")

# import `app` from the project directory even when started from elsewhere
chdir = str(ROOT)
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "128"))
# well above the longest request (one attempt: WECHAT_ATTEMPT_TIMEOUT + 0.5 s)
timeout = 60
# gunicorn 27's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl): two instances
# on one machine (e.g. `make run` beside the tests) would collide; nothing here uses it
control_socket_disable = True
# on SIGTERM, requests in flight (waiting for an answer) get this long to finish
# (deploy/systemd/wechat-bot-web.service stops it after TimeoutStopSec=30)
graceful_timeout = 20
keepalive = 5
# behind nginx: bound by the proxy, small bodies only
limit_request_line = 8190
accesslog = "-"
# no access line for a push: the webhook logs each delivery of a push itself (bot/access_log.py)
logger_class = "bot.access_log.AccessLogger"
# the path without the query string: WeChat's signature, nonce and openid are not logged
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'

# gunicorn's error log (master and workers) and access log go through the root logger's one handler,
# the app's (bot/logs.py), to stderr: every line in LOG_FORMAT (`text` or `json`), each event once.
# In each worker, create_app's configure_logging replaces that handler with an identical one.
# A level logging does not know would end the master with a traceback before any worker could say
# what is wrong: INFO here, and the workers' settings (bot/config.py) stop them naming LOG_LEVEL.
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # bot.config.LOG_LEVELS
_log_level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
_log_level = _log_level if _log_level in _LOG_LEVELS else "INFO"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": _log_level, "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": _log_level, "handlers": [], "propagate": True},
        # one line per request whatever LOG_LEVEL, as before
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    },
    "handlers": {
        "console": {"()": "bot.logs.console_handler", "log_format": os.environ.get("LOG_FORMAT", "text")}
    },
    "formatters": {},
}


def post_worker_init(worker: object) -> None:
    """The app is built in this worker: its objects never need the garbage collector's full walks
    again (bot/heap.py — a 30–40 ms pause of every request the worker holds, each time)."""
    from bot import heap

    heap.settle()
