"""Who is admin, who is banned, one-time admin codes, and the audit log of admin actions.

Admins are WECHAT_ADMIN_OPENIDS plus whoever sent `/auth CODE` with a code made on the server
(`make admin-code`): 10 random characters (50 bits), valid ADMIN_CODE_TTL seconds, usable once,
stored only as a hash. Failed attempts are counted per user and refused past a limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bot import keys

log = logging.getLogger(__name__)

#: no ambiguous characters (0/O, 1/l/I)
CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CODE_LENGTH = 10
#: failed /auth attempts a user may make per AUTH_FAILURE_WINDOW
MAX_AUTH_FAILURES = 5
AUDIT_KEEP = 1000


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()


class AdminStore:
    def __init__(self, client: redis.Redis, configured: list[str]) -> None:
        self.redis = client
        self.configured = set(configured)

    def is_admin(self, openid: str) -> bool:
        return openid in self.configured or bool(self.redis.sismember(keys.ADMINS, openid))

    def admins(self) -> list[str]:
        return sorted(self.configured | set(map(str, self.redis.smembers(keys.ADMINS))))

    def new_code(self) -> str:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        self.redis.set(keys.admin_code(_digest(code)), "1", ex=keys.ADMIN_CODE_TTL)
        return code

    def redeem(self, openid: str, code: str) -> bool | None:
        """True: now admin. False: wrong code. None: too many failures, not even checked."""
        attempts = int(self.redis.incr(keys.auth_failures(openid)))  # counted first: no parallel slip
        if attempts == 1:  # the window starts with the first attempt (EXPIRE NX needs Redis 7)
            self.redis.expire(keys.auth_failures(openid), keys.AUTH_FAILURE_WINDOW)
        if attempts > MAX_AUTH_FAILURES:
            log.warning("/auth refused for %s: %s attempts this hour", openid, attempts)
            return None
        if code and self.redis.getdel(keys.admin_code(_digest(code))) is not None:
            self.redis.delete(keys.auth_failures(openid))
            self.redis.sadd(keys.ADMINS, openid)
            self.audit(openid, "auth", "became admin with a one-time code")
            return True
        log.warning("failed /auth attempt by %s (%s this hour)", openid, attempts)
        return False

    def ban(self, openid: str) -> None:
        self.redis.sadd(keys.BANNED, openid)

    def unban(self, openid: str) -> bool:
        return bool(self.redis.srem(keys.BANNED, openid))

    def is_banned(self, openid: str) -> bool:
        return bool(self.redis.sismember(keys.BANNED, openid))

    def audit(self, admin: str, command: str, args: str) -> None:
        record = {"at": time.time(), "admin": admin, "command": command, "args": args[:200]}
        pipe = self.redis.pipeline()
        pipe.lpush(keys.AUDIT, json.dumps(record, ensure_ascii=False))
        pipe.ltrim(keys.AUDIT, 0, AUDIT_KEEP - 1)
        pipe.execute()
        log.info("admin %s ran /%s %s", admin, command, args[:80])

    def audit_log(self, limit: int = 20) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(keys.AUDIT, 0, limit - 1)]


def main() -> int:
    """`make admin-code`: print a one-time code for `/auth CODE`."""
    from dotenv import load_dotenv

    from bot.config import PROJECT_ENV_FILE, ConfigError, load_settings
    from bot.redis_server import embedded_url
    from bot.services import make_redis

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
