"""`make admin-code`: print a one-time code; the admin sends `/auth CODE` in the chat."""

from __future__ import annotations

import sys

from bot.ops import bootstrap
from bot.runtime import make_redis
from bot.store.users import CODE_TTL, AdminStore


def main() -> int:
    """`make admin-code`: print a one-time code for `/auth CODE`.

    Without REDIS_URL it uses the Redis that the running `make run` embeds (the code must land
    where the bot looks for it); with no LLM configured it accepts the settings as `make run` does.
    """
    settings = bootstrap.load("make a code", running_redis=True, offline_llm=True)  # or exits 1
    code = AdminStore(make_redis(settings), settings.wechat_admin_openids).new_code()
    minutes = CODE_TTL // 60
    print(f"Send this in the chat within {minutes} minutes (once):  /auth {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
