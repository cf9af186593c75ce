"""Per-user limits (messages per minute; questions and images per day), in Redis so that every process
counts the same."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal
from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.days import day_of

#: "ok", or what refused: the rate limit, the daily question quota, the daily image quota
Verdict = Literal["ok", "rate", "quota", "images"]

#: One message, atomically: counted against the rate limit (refused or not, so that hammering keeps a
#: user limited), then against each daily counter only when every limit admits it — nothing to take
#: back, and every counter gets its expiry in the same step as its increment (no key left without one).
#: KEYS: the minute's rate counter, then the daily counters. ARGV: per-minute limit (0: none), the rate
#: counter's TTL, the daily counters' TTL, then one limit per daily counter (0: counted, no limit).
#: Returns 0 (admitted), -1 (rate) or the 1-based number of the daily counter that is full.
ADMIT = """
local in_minute = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local per_minute = tonumber(ARGV[1])
if per_minute > 0 and in_minute > per_minute then return -1 end
for i = 2, #KEYS do
    local limit = tonumber(ARGV[i + 2])
    if limit > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= limit then return i - 1 end
end
for i = 2, #KEYS do
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 0
"""


class Limits:
    def __init__(
        self, client: redis.Redis, per_minute: int, zone: ZoneInfo, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = client
        self.per_minute = per_minute
        self.zone = zone
        self.clock = clock
        self._admit = client.register_script(ADMIT)

    def admit(self, openid: str, daily_quota: int | None = 0, image_quota: int | None = None) -> Verdict:
        """Count one message against the rate limit and, when admitted, against the daily counters it
        uses: questions (`daily_quota`) and images (`image_quota`). None: the message does not use that
        counter (a command uses neither); 0: counted, without a limit."""
        now = self.clock()
        day = day_of(self.zone, now)
        uses: list[tuple[str, int | None, Verdict]] = [
            (keys.usage(day, openid), daily_quota, "quota"),
            (keys.image_usage(day, openid), image_quota, "images"),
        ]
        counters = [(counter, quota, verdict) for counter, quota, verdict in uses if quota is not None]
        found = int(
            self._admit(
                keys=[keys.rate(openid, int(now // 60)), *(counter for counter, _, _ in counters)],
                args=[self.per_minute, keys.RATE_TTL, keys.DAILY_TTL, *(quota for _, quota, _ in counters)],
            )
        )
        if found == -1:
            return "rate"
        return "ok" if found == 0 else counters[found - 1][2]
