"""The operator console's way in: one-time login links and the sessions they start.

A link's token and a session's id are 256 random bits (`secrets.token_urlsafe(32)`) and are stored
only by their SHA-256: a copy of Redis (a backup, a replica) holds no session that opens the console.
One exception, outside this store: the chat's reply to `/console`, link included, is kept with its push
(bot/store/pushes.py, MESSAGE_TTL) so that WeChat's retries get the same reply: a copy of Redis made
within LOGIN_TTL of a `/console` holds a link that still works.
A login token is taken with GETDEL, so two browsers opening the same link at the same instant get
one session between them. Every record also carries its own expiry, checked against `clock`, so that
an expired link or session is refused even where Redis has not dropped it yet (and tests move time
without sleeping). Sessions live in Redis, so every web process and machine knows them; each admin's
session ids are also kept in a set, so that `/console logout` ends all of them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bot.store import keys

LOGIN_TTL = keys.CONSOLE_LOGIN_TTL
SESSION_TTL = keys.CONSOLE_SESSION_TTL


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    """A live console session: whose it is, its CSRF token, and when it ends (epoch seconds)."""

    openid: str
    csrf: str
    created: float
    expires: float


class ConsoleStore:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.clock = clock

    # --- one-time login links ------------------------------------------------------------------
    def new_login(self, openid: str) -> str:
        """A token for `{PUBLIC_BASE_URL}/console/login/{token}`: valid LOGIN_TTL seconds, once."""
        token = new_secret()
        record = json.dumps({"openid": openid, "expires": self.clock() + LOGIN_TTL})
        self.redis.set(keys.console_login(_digest(token)), record, ex=LOGIN_TTL)
        return token

    def redeem_login(self, token: str) -> str | None:
        """The openid a token was made for, once (GETDEL: a second opening finds nothing); None for an
        unknown, used or expired token."""
        raw = self.redis.getdel(keys.console_login(_digest(token)))
        if raw is None:
            return None
        record = json.loads(raw)
        return str(record["openid"]) if float(record["expires"]) > self.clock() else None

    # --- sessions ------------------------------------------------------------------------------
    def new_session(self, openid: str) -> tuple[str, Session]:
        """Start a session: its id (for the cookie, never stored as is) and its record."""
        session_id, now = new_secret(), self.clock()
        session = Session(openid, new_secret(), now, now + SESSION_TTL)
        digest = _digest(session_id)
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.console_session(digest),
            mapping={"openid": openid, "csrf": session.csrf, "created": now, "expires": session.expires},
        )
        pipe.expire(keys.console_session(digest), SESSION_TTL)
        pipe.sadd(keys.console_sessions(openid), digest)
        pipe.expire(keys.console_sessions(openid), SESSION_TTL)
        pipe.execute()
        return session_id, session

    def session(self, session_id: str) -> Session | None:
        """The live session of a cookie's id; None for an unknown, ended or expired one."""
        if not session_id:
            return None
        found = self.redis.hgetall(keys.console_session(_digest(session_id)))
        if not found or "openid" not in found:
            return None
        session = Session(
            str(found["openid"]), str(found["csrf"]), float(found["created"]), float(found["expires"])
        )
        return session if session.expires > self.clock() else None

    def end_session(self, session_id: str) -> None:
        """Log out of one session (the page's button)."""
        digest = _digest(session_id)
        openid = self.redis.hget(keys.console_session(digest), "openid")
        pipe = self.redis.pipeline()
        pipe.delete(keys.console_session(digest))
        if openid is not None:
            pipe.srem(keys.console_sessions(str(openid)), digest)
        pipe.execute()

    def end_all(self, openid: str) -> int:
        """End every session of one admin (`/console logout`); how many were live."""
        digests = [str(digest) for digest in self.redis.smembers(keys.console_sessions(openid))]
        pipe = self.redis.pipeline()
        for digest in digests:
            pipe.delete(keys.console_session(digest))
        pipe.delete(keys.console_sessions(openid))
        ended = pipe.execute()
        return sum(int(count) for count in ended[: len(digests)])
