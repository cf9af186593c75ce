"""What both benchmarks share: the account's credentials and the infrastructure (Redis, fake LLM)."""

from __future__ import annotations

import re
from pathlib import Path

from bench.procs import Child

TOKEN = "bench-token"
APPID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
#: log lines of the app that mean something went wrong (a traceback, an ERROR/CRITICAL record)
_BAD_LINE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|\[CRITICAL\]|WORKER TIMEOUT")


def app_env(port: int, redis_url: str, openai_url: str, aes: bool = False) -> dict[str, str]:
    """The settings of the bot under test, as environment variables (bot/config.py names)."""
    env = {
        "wechat_token": TOKEN,
        "redis_url": redis_url,
        "openai_base_url": openai_url,
        "openai_api_key": "x",
        "host": "127.0.0.1",
        "port": str(port),
    }
    if aes:
        env |= {"wechat_aes_key": AES_KEY, "wechat_appid": APPID}
    return env


def bad_log_lines(child: Child, limit: int = 5) -> tuple[int, list[str]]:
    """How many log lines of `child` report an error, and the first few of them as evidence."""
    lines = [line for line in child.log_text().splitlines() if _BAD_LINE.search(line)]
    return len(lines), lines[:limit]


def log_dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path
