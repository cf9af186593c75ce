"""Per-user limits (rate per minute, questions per day) and daily statistics, in Redis so that every
process counts the same."""

from __future__ import annotations

import time
from typing import Literal

import redis

from bot.store import keys

Verdict = Literal["ok", "rate", "quota"]


def today(now: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.localtime(now))


class Limits:
    def __init__(self, client: redis.Redis, per_minute: int) -> None:
        self.redis = client
        self.per_minute = per_minute

    def admit(self, openid: str, daily_quota: int) -> Verdict:
        """Count one question; refuse it when over the rate limit or the daily quota (0: none)."""
        minute = int(time.time() // 60)
        pipe = self.redis.pipeline()
        pipe.incr(keys.rate(openid, minute))
        pipe.expire(keys.rate(openid, minute), 120)
        pipe.incr(keys.usage(today(), openid))
        pipe.expire(keys.usage(today(), openid), keys.DAILY_TTL)
        in_minute, _, in_day, _ = pipe.execute()
        if self.per_minute and int(in_minute) > self.per_minute:
            self.redis.decr(keys.usage(today(), openid))
            return "rate"
        if daily_quota and int(in_day) > daily_quota:
            self.redis.decr(keys.usage(today(), openid))
            return "quota"
        return "ok"

    def seen(self, openid: str) -> None:
        """A message from this user (daily stats; the customer-service window opens)."""
        day, now = today(), time.time()
        pipe = self.redis.pipeline()
        pipe.sadd(keys.day_users(day), openid)
        pipe.expire(keys.day_users(day), keys.DAILY_TTL)
        pipe.incr(keys.day_messages(day))
        pipe.expire(keys.day_messages(day), keys.DAILY_TTL)
        pipe.zadd(keys.LAST_SEEN, {openid: now})
        pipe.execute()

    def users_today(self) -> int:
        return int(self.redis.scard(keys.day_users(today())))

    def messages_today(self) -> int:
        return int(self.redis.get(keys.day_messages(today())) or 0)

    def window_open(self, within: float = 48 * 3600) -> list[str]:
        """Users who wrote within the customer-service window."""
        return list(map(str, self.redis.zrangebyscore(keys.LAST_SEEN, time.time() - within, "+inf")))
