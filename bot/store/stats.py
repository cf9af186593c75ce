"""Who wrote and how much, per day (in TIMEZONE), and when each user last wrote (the 48-hour
customer-service window that /broadcast reaches)."""

from __future__ import annotations

import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import redis
from redis.typing import EncodableT

from bot.store import keys
from bot.store.days import day_of
from bot.store.pushes import OnFirst

#: WeChat lets an account send customer-service messages this long after the user's last message
CS_WINDOW_SECONDS = 48 * 3600

#: One message, atomically: the day's users and messages, and the user's last message time (LAST_SEEN,
#: trimmed to the window). k: the day's users, the day's messages, LAST_SEEN. a: openid, now, DAILY_TTL,
#: the window, the exclusive lower bound of the window (ZREMRANGEBYSCORE's "(" syntax). `seen` runs it
#: alone; the webhook, inside the replay guard's script on a push's first delivery (`on_arrival`).
SEEN_FUNCTION = """
local function seen(k, a)
    redis.call('SADD', k[1], a[1])
    redis.call('EXPIRE', k[1], a[3])
    redis.call('INCR', k[2])
    redis.call('EXPIRE', k[2], a[3])
    redis.call('ZADD', k[3], a[2], a[1])
    redis.call('ZREMRANGEBYSCORE', k[3], '-inf', a[5])
    redis.call('EXPIRE', k[3], a[4])
end
"""
SEEN = SEEN_FUNCTION + "seen(KEYS, ARGV)\nreturn 1\n"


class DailyStats:
    def __init__(self, client: redis.Redis, zone: ZoneInfo, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.zone = zone
        self.clock = clock
        self._seen = client.register_script(SEEN)

    def seen(self, openid: str) -> None:
        """A message from this user (daily stats; the customer-service window opens).

        LAST_SEEN keeps only the window: each write drops the entries older than it (ZREMRANGEBYSCORE
        costs the log of the set's size plus what it removes, so about one removal per message), and
        the set expires a window after the last message, when all of it would be older anyway. All in
        one script, so that no key is left without its expiry."""
        names, args = self._seen_call(openid)
        self._seen(keys=names, args=args)

    def on_arrival(self, openid: str) -> OnFirst:
        """`seen`, as the work of a push's first delivery inside the webhook's arrival script (one round
        trip with the replay guard; a replay or a retry is not counted)."""
        names, args = self._seen_call(openid)
        return OnFirst(SEEN_FUNCTION, "seen", names, args)

    def _seen_call(self, openid: str) -> tuple[list[str], list[EncodableT]]:
        now = self.clock()
        day = day_of(self.zone, now)
        names = [keys.day_users(day), keys.day_messages(day), keys.LAST_SEEN]
        return names, [openid, now, keys.DAILY_TTL, CS_WINDOW_SECONDS, f"({now - CS_WINDOW_SECONDS}"]

    def users_today(self) -> int:
        return int(self.redis.scard(keys.day_users(day_of(self.zone, self.clock()))))

    def messages_today(self) -> int:
        return int(self.redis.get(keys.day_messages(day_of(self.zone, self.clock()))) or 0)

    def window_open(self, within: float = CS_WINDOW_SECONDS) -> list[str]:
        """Users who wrote within the customer-service window (LAST_SEEN keeps no more than that)."""
        return list(map(str, self.redis.zrangebyscore(keys.LAST_SEEN, self.clock() - within, "+inf")))
