"""`make admin-code`: print a one-time code; the admin sends `/auth CODE` in the chat."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bot.store import keys
from bot.store.users import AdminStore


def main() -> int:
    """`make admin-code`: print a one-time code for `/auth CODE`."""
    from dotenv import load_dotenv

    from bot.config import PROJECT_ENV_FILE, ConfigError, load_settings
    from bot.ops.redis_server import embedded_url
    from bot.runtime import make_redis

    load_dotenv(PROJECT_ENV_FILE)  # REDIS_URL may be set there
    try:
        settings = load_settings(redis_url=os.environ.get("REDIS_URL") or "redis://embedded")
        if settings.redis_url == "redis://embedded":  # no REDIS_URL: the Redis `make run` embeds
            running = embedded_url(Path(settings.data_dir).resolve())
            if running is None:
                raise ConfigError("REDIS_URL: unset, and no `make run` with an embedded Redis is running")
            settings = load_settings(redis_url=running)
    except ConfigError as exc:
        print(f"cannot make a code: {exc}", file=sys.stderr)
        return 1
    code = AdminStore(make_redis(settings), settings.wechat_admin_openids).new_code()
    minutes = keys.ADMIN_CODE_TTL // 60
    print(f"Send this in the chat within {minutes} minutes (once):  /auth {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
