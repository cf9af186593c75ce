"""Who wrote and how much, per day (in TIMEZONE), and when each user last wrote (the 48-hour
customer-service window that /broadcast reaches)."""

from __future__ import annotations

import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.days import day_of

#: WeChat lets an account send customer-service messages this long after the user's last message
CS_WINDOW_SECONDS = 48 * 3600


class DailyStats:
    def __init__(self, client: redis.Redis, zone: ZoneInfo, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.zone = zone
        self.clock = clock

    def seen(self, openid: str) -> None:
        """A message from this user (daily stats; the customer-service window opens).

        LAST_SEEN keeps only the window: each write drops the entries older than it (ZREMRANGEBYSCORE
        costs the log of the set's size plus what it removes, so about one removal per message), and
        the set expires a window after the last message, when all of it would be older anyway. All in
        one MULTI, so that no key is left without its expiry."""
        now = self.clock()
        day = day_of(self.zone, now)
        pipe = self.redis.pipeline()
        pipe.sadd(keys.day_users(day), openid)
        pipe.expire(keys.day_users(day), keys.DAILY_TTL)
        pipe.incr(keys.day_messages(day))
        pipe.expire(keys.day_messages(day), keys.DAILY_TTL)
        pipe.zadd(keys.LAST_SEEN, {openid: now})
        pipe.zremrangebyscore(keys.LAST_SEEN, "-inf", f"({now - CS_WINDOW_SECONDS}")
        pipe.expire(keys.LAST_SEEN, CS_WINDOW_SECONDS)
        pipe.execute()

    def users_today(self) -> int:
        return int(self.redis.scard(keys.day_users(day_of(self.zone, self.clock()))))

    def messages_today(self) -> int:
        return int(self.redis.get(keys.day_messages(day_of(self.zone, self.clock()))) or 0)

    def window_open(self, within: float = CS_WINDOW_SECONDS) -> list[str]:
        """Users who wrote within the customer-service window (LAST_SEEN keeps no more than that)."""
        return list(map(str, self.redis.zrangebyscore(keys.LAST_SEEN, self.clock() - within, "+inf")))
