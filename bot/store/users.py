"""Who is admin, who is banned, one-time admin codes, and the audit log of admin actions.

Admins are WECHAT_ADMIN_OPENIDS plus whoever sent `/auth CODE` with a code made on the server
(`make admin-code`): 10 random characters (50 bits), valid ADMIN_CODE_TTL seconds, usable once,
stored only as a hash. Failed attempts are counted per user and refused past a limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis

from bot.store import keys

log = logging.getLogger(__name__)

#: how long a process trusts its copy of the admin and ban sets (seconds): they change rarely (an /auth, a
#: /ban), a push reads them on its way, and a round trip for each cost more than the rest of a command.
#: A change made by another process applies here this much later at most; this process's own, at once.
MEMBERSHIP_TTL = 2.0
#: no ambiguous characters (0/O, 1/l/I)
CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CODE_LENGTH = 10
#: failed /auth attempts a user may make per AUTH_FAILURE_WINDOW
MAX_AUTH_FAILURES = 5
AUDIT_KEEP = 1000
#: an admin code is valid this long (seconds), once
CODE_TTL = keys.ADMIN_CODE_TTL

#: INCR that starts a window: the expiry is set in the same step as the first increment (and put back
#: on a key that lost it), so that no failure between the two leaves a counter forever; later
#: increments keep the window (Redis 6.2 has no EXPIRE NX). KEYS: the counter. ARGV: the window.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()


class CachedSet:
    """A Redis set as this process last read it, read again once it is `ttl` seconds old."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        ttl: float = MEMBERSHIP_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis, self.key, self.ttl, self.clock = client, key, ttl, clock
        #: (members, read at, generation), replaced in one assignment; `forget` starts a generation, so
        #: that a read which began before a change made here is not kept
        self._read: tuple[frozenset[str], float | None, int] = (frozenset(), None, 0)

    def __contains__(self, member: str) -> bool:
        members, read_at, generation = self._read
        now = self.clock()
        if read_at is None or now - read_at >= self.ttl:
            members = frozenset(map(str, self.redis.smembers(self.key)))
            if self._read[2] == generation:
                self._read = (members, now, generation)
        return member in members

    def forget(self) -> None:
        """This process changed the set: the next look reads it again."""
        self._read = (frozenset(), None, self._read[2] + 1)


class AdminStore:
    def __init__(
        self, client: redis.Redis, configured: list[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.redis = client
        self.configured = set(configured)
        self._count_in_window = client.register_script(COUNT_IN_WINDOW)
        self._admins = CachedSet(client, keys.ADMINS, clock=clock)
        self._banned = CachedSet(client, keys.BANNED, clock=clock)

    def is_admin(self, openid: str) -> bool:
        """WECHAT_ADMIN_OPENIDS, or made admin with /auth (known here MEMBERSHIP_TTL after it at most)."""
        return openid in self.configured or openid in self._admins

    def admins(self) -> list[str]:
        return sorted(self.configured | set(map(str, self.redis.smembers(keys.ADMINS))))

    def new_code(self) -> str:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        self.redis.set(keys.admin_code(_digest(code)), "1", ex=keys.ADMIN_CODE_TTL)
        return code

    def redeem(self, openid: str, code: str) -> bool | None:
        """True: now admin. False: wrong code. None: too many failures, not even checked."""
        # counted first (no parallel slip); the window starts with the first attempt
        attempts = int(
            self._count_in_window(keys=[keys.auth_failures(openid)], args=[keys.AUTH_FAILURE_WINDOW])
        )
        if attempts > MAX_AUTH_FAILURES:
            log.warning("/auth refused for %s: %s attempts this hour", openid, attempts)
            return None
        if code and self.redis.getdel(keys.admin_code(_digest(code))) is not None:
            self.redis.delete(keys.auth_failures(openid))
            self.redis.sadd(keys.ADMINS, openid)
            self._admins.forget()
            self.audit(openid, "auth", "became admin with a one-time code")
            return True
        log.warning("failed /auth attempt by %s (%s this hour)", openid, attempts)
        return False

    def ban(self, openid: str) -> None:
        self.redis.sadd(keys.BANNED, openid)
        self._banned.forget()

    def unban(self, openid: str) -> bool:
        found = bool(self.redis.srem(keys.BANNED, openid))
        self._banned.forget()
        return found

    def is_banned(self, openid: str) -> bool:
        """In the ban set (a /ban in another process applies here MEMBERSHIP_TTL after it at most)."""
        return openid in self._banned

    def audit(self, admin: str, command: str, args: str) -> None:
        record = {"at": time.time(), "admin": admin, "command": command, "args": args[:200]}
        pipe = self.redis.pipeline()
        pipe.lpush(keys.AUDIT, json.dumps(record, ensure_ascii=False))
        pipe.ltrim(keys.AUDIT, 0, AUDIT_KEEP - 1)
        pipe.execute()
        log.info("admin %s ran /%s %s", admin, command, args[:80])

    def audit_log(self, limit: int = 20) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(keys.AUDIT, 0, limit - 1)]


class ModelChoices:
    """The model each user picked with /model, among the allowed ones (ALLOWED_MODELS and the configured
    default); None: the configured default. A choice lasts MODEL_CHOICE_TTL from the /model that made it,
    and one that is no longer allowed (ALLOWED_MODELS changed since) is not used."""

    def __init__(
        self, client: redis.Redis, allowed: list[str], picked: Callable[[], list[str] | None] | None = None
    ) -> None:
        """`allowed`: the configured default first, then ALLOWED_MODELS; `picked`: where to read the
        run-time choice among them (the console's override; None there: all of them)."""
        self.redis = client
        self.configured = list(dict.fromkeys(allowed))  # in order, once each
        self.picked = picked

    @property
    def allowed(self) -> list[str]:
        """The configured models followers may pick now; the default (the first) always stays."""
        chosen = self.picked() if self.picked is not None else None
        if chosen is None:
            return self.configured
        return [model for index, model in enumerate(self.configured) if index == 0 or model in chosen]

    def get(self, openid: str) -> str | None:
        found = self.redis.get(keys.user_model(openid))
        return str(found) if found is not None and str(found) in self.allowed else None

    def of_question(self, openid: str, picked: str | None) -> str | None:
        """The model of a question: the one its user had picked when asking (`picked`, recorded with the
        answer; '' for none), if still allowed; None: the configured default. `picked` None (an answer
        from before the choice was recorded): the user's choice now."""
        if picked is None:
            return self.get(openid)
        return picked if picked and picked in self.allowed else None

    def set(self, openid: str, model: str) -> None:
        if model not in self.allowed:
            raise ValueError(f"model {model!r} is not allowed (ALLOWED_MODELS)")
        self.redis.set(keys.user_model(openid), model, ex=keys.MODEL_CHOICE_TTL)
