"""`make console-link`: print a one-time login link to the operator console, from the server's shell.

    make console-link                  # for the first of WECHAT_ADMIN_OPENIDS
    make console-link OPENID=o6_bm…    # for another admin (configured, or made admin with /auth)

The link is `{PUBLIC_BASE_URL}/console/login/{token}`, valid 5 minutes, once — the same as `/console`
in the chat gives. It needs PUBLIC_BASE_URL (the console is served at that address) and an admin.
"""

from __future__ import annotations

import sys

from bot.config import Settings
from bot.ops import bootstrap
from bot.runtime import make_redis
from bot.store.console import LOGIN_TTL, ConsoleStore
from bot.store.users import AdminStore


def choose_admin(settings: Settings, given: str, admins: AdminStore) -> str:
    """The admin to log in: `given`, or the first of WECHAT_ADMIN_OPENIDS; exits 1 with the reason."""
    openid = given.strip() or next(iter(settings.wechat_admin_openids), "")
    if not openid:
        fail("no admin: set WECHAT_ADMIN_OPENIDS, or pass OPENID=… (an openid made admin with /auth)")
    if not admins.is_admin(openid):
        fail(f"{openid} is not an admin (WECHAT_ADMIN_OPENIDS, or /auth with a code from make admin-code)")
    return openid


def fail(reason: str) -> None:
    print(f"cannot make a console link: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    """Print the link. Without REDIS_URL it uses the Redis that a running `make run` embeds."""
    args = sys.argv[1:] if argv is None else argv
    settings = bootstrap.load("make a console link", running_redis=True, offline_llm=True)  # or exits 1
    if not settings.public_base_url:
        fail(
            "PUBLIC_BASE_URL is not set (the console is served at that address, e.g. https://bot.example.com)"
        )
    client = make_redis(settings)
    try:
        openid = choose_admin(
            settings, args[0] if args else "", AdminStore(client, settings.wechat_admin_openids)
        )
        token = ConsoleStore(client).new_login(openid)
    finally:
        client.close()
    print(f"Open within {LOGIN_TTL // 60} minutes (once), as {openid}:")
    print(f"{settings.public_base_url}/console/login/{token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
