"""Per-user limits (questions per minute, questions per day), in Redis so that every process counts
the same."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal
from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.days import day_of

Verdict = Literal["ok", "rate", "quota"]


class Limits:
    def __init__(
        self, client: redis.Redis, per_minute: int, zone: ZoneInfo, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = client
        self.per_minute = per_minute
        self.zone = zone
        self.clock = clock

    def admit(self, openid: str, daily_quota: int) -> Verdict:
        """Count one question; refuse it when over the rate limit or the daily quota (0: none)."""
        now = self.clock()
        minute, usage = int(now // 60), keys.usage(day_of(self.zone, now), openid)
        pipe = self.redis.pipeline()
        pipe.incr(keys.rate(openid, minute))
        pipe.expire(keys.rate(openid, minute), 120)
        pipe.incr(usage)
        pipe.expire(usage, keys.DAILY_TTL)
        in_minute, _, in_day, _ = pipe.execute()
        if self.per_minute and int(in_minute) > self.per_minute:
            self.redis.decr(usage)
            return "rate"
        if daily_quota and int(in_day) > daily_quota:
            self.redis.decr(usage)
            return "quota"
        return "ok"
