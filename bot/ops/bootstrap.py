"""How the operator tools (`make run`, `make check`, `make admin-code`, `make local-llm`) read the settings.

One way for all of them, so that they cannot disagree about which `.env` counts or which Redis is
meant: the project's own `.env` (never one in the working directory; the environment wins over it),
DATA_DIR relative to the project directory, and — when REDIS_URL is unset — the embedded Redis that
`make run` starts and notes in DATA_DIR/redis/url (the URL carries its password; the file is 0600).
A bad setting ends the tool with a message that names it, like the bot's own startup, and so does a
Redis that does not answer when the tool needs it (the words of `make check`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from dotenv import dotenv_values, load_dotenv

from bot.config import PROJECT_ENV_FILE, ConfigError, Settings, load_settings
from bot.ops.redis_server import embedded_url, url_file

PROJECT_ROOT = PROJECT_ENV_FILE.parent
#: stands in for REDIS_URL while it is validated and the embedded Redis is not up (never connected to)
EMBEDDED_PLACEHOLDER = "redis://embedded"


def environment(env_file: Path = PROJECT_ENV_FILE) -> dict[str, str]:
    """The variables as the bot sees them: the project's `.env`, overridden by the environment."""
    found = dotenv_values(env_file) if env_file.is_file() else {}
    from_file = {key: value for key, value in found.items() if value is not None}
    return {**from_file, **os.environ}


def data_dir(value: str | os.PathLike[str]) -> Path:
    """DATA_DIR as an absolute path: relative to the project directory, whatever the working directory
    (the bot's processes run there, and a tool run from elsewhere must find the same Redis)."""
    return (PROJECT_ROOT / value).resolve()


def configured_data_dir(env_file: Path = PROJECT_ENV_FILE) -> Path:
    """DATA_DIR alone, for a tool that needs no other setting (`make local-llm` needs no WECHAT_TOKEN)."""
    default = str(Settings.model_fields["data_dir"].default)
    return data_dir(environment(env_file).get("DATA_DIR", "").strip() or default)


def settings(
    env_file: Path = PROJECT_ENV_FILE,
    running_redis: bool = False,
    offline_llm: bool = False,
    **overrides: Any,
) -> Settings:
    """The validated settings of a tool; ConfigError naming the setting otherwise.

    With REDIS_URL unset, redis_url is "" (`make run` embeds a Redis, `make check` says so), or with
    running_redis the URL of the Redis a running `make run` embeds. offline_llm: with no LLM
    configured, the local FastChat cluster `make run` starts (bot.ops.local_llm) instead of failing
    on OPENAI_API_KEY.
    """
    env = environment(env_file)
    if offline_llm:  # what the caller passes counts as configured, like the environment
        given_here = {key.upper(): str(value) for key, value in overrides.items() if value not in ("", None)}
        overrides = {**_offline_overrides({**env, **given_here}), **overrides}
    given = overrides.get("redis_url") or env.get("REDIS_URL", "").strip()
    if not given:
        overrides["redis_url"] = EMBEDDED_PLACEHOLDER
    loaded = load_settings(_env_file=env_file, **overrides)
    loaded = loaded.model_copy(update={"data_dir": str(data_dir(loaded.data_dir))})
    if given:
        return loaded
    return loaded.model_copy(update={"redis_url": _running_redis(loaded) if running_redis else ""})


def webhook_url(loaded: Settings) -> str:
    """The URL to paste in 公众号后台: PUBLIC_BASE_URL's /wechat, or a placeholder for the domain."""
    base = loaded.public_base_url or "https://<your domain>"
    return f"{base}/wechat"


def uses_offline_llm(loaded: Settings) -> bool:
    """True when `settings(offline_llm=True)` chose the local cluster (it is not started yet)."""
    from bot.ops.local_llm import LOCAL_OVERRIDES

    return loaded.fastchat_controller_url == LOCAL_OVERRIDES["fastchat_controller_url"]


def load_env() -> None:
    """The project's `.env` into this process's environment, which wins over it: the tool's children
    and its own os.environ lookups then see the values the settings were read with."""
    load_dotenv(PROJECT_ENV_FILE, override=False)


def load(doing: str, running_redis: bool = False, offline_llm: bool = False) -> Settings:
    """For a tool's main(): load_env(), then the settings — or exit 1 with
    "cannot <doing>: <the setting and what is wrong>"."""
    load_env()
    try:
        loaded = settings(running_redis=running_redis, offline_llm=offline_llm)
    except ConfigError as exc:
        print(f"cannot {doing}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    if running_redis:
        require_redis(loaded, doing)
    return loaded


def require_redis(loaded: Settings, doing: str) -> None:
    """For a tool that needs Redis now: exit 1 with "cannot <doing>: <what does not answer and why>"
    unless its Redis answers PING (a `make run` killed outright leaves a stale URL behind)."""
    embedded = not environment().get("REDIS_URL", "").strip()
    problem = redis_problem(loaded.redis_url, embedded, Path(loaded.data_dir))
    if problem is not None:
        print(f"cannot {doing}: {problem[0]}: {problem[1]}", file=sys.stderr, flush=True)
        raise SystemExit(1)


def redis_problem(url: str, embedded: bool, data_dir: Path) -> tuple[str, str] | None:
    """None when the Redis at `url` answers PING; else (the setting or "embedded Redis", what is wrong),
    in the words `make check` uses too. `embedded`: the URL is the one `make run` noted in DATA_DIR."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return _unanswered(url, embedded, data_dir, exc)
    finally:
        client.close()
    return None


def shown_url(url: str) -> str:
    """A Redis URL fit to print: its password masked."""
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", url)


def _unanswered(
    url: str, embedded: bool, data_dir: Path, exc: redis.exceptions.RedisError
) -> tuple[str, str]:
    shown = shown_url(url)
    if embedded:
        where = url_file(data_dir)
        return "embedded Redis", f"{shown}, noted in {where}, does not answer ({exc}): is `make run` running?"
    if isinstance(exc, redis.exceptions.AuthenticationError):
        hint = " (check the password in REDIS_URL)"
    elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        hint = " (is redis-server running there?)"
    else:  # the server answered: e.g. "DB index is out of range"
        hint = ""
    return "REDIS_URL", f"cannot use {shown}: {exc}{hint}"


def _offline_overrides(env: Mapping[str, str]) -> dict[str, str]:
    # imported here: bot.ops.local_llm reads its DATA_DIR through this module
    from bot.ops.local_llm import LOCAL_OVERRIDES, wanted

    return dict(LOCAL_OVERRIDES) if wanted(env) else {}


def _running_redis(loaded: Settings) -> str:
    """The URL (with its password) that a running `make run` noted for its embedded Redis."""
    try:
        running = embedded_url(Path(loaded.data_dir))
    except OSError as exc:
        raise ConfigError(
            f"REDIS_URL: unset, and the embedded Redis's URL cannot be read ({exc}): run this as the "
            "user of `make run`"
        ) from None
    if running is None:
        raise ConfigError("REDIS_URL: unset, and no `make run` with an embedded Redis is running")
    return running
