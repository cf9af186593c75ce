"""How the operator tools (`make run`, `make check`, `make admin-code`, `make local-llm`) read the settings.

One way for all of them, so that they cannot disagree about which `.env` counts or which Redis is
meant: the project's own `.env` (never one in the working directory; the environment wins over it),
DATA_DIR relative to the project directory, and — when REDIS_URL is unset — the embedded Redis that
`make run` starts and notes in DATA_DIR/redis/url (the URL carries its password; the file is 0600).
A bad setting ends the tool with a message that names it, like the bot's own startup.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, load_dotenv

from bot.config import PROJECT_ENV_FILE, ConfigError, Settings, load_settings
from bot.ops.redis_server import embedded_url

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
        return settings(running_redis=running_redis, offline_llm=offline_llm)
    except ConfigError as exc:
        print(f"cannot {doing}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


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
