"""Who wrote and how much, per day (in TIMEZONE), and when each user last wrote (the 48-hour
customer-service window that /broadcast reaches).

Only the messages a user sends count (text, voice, image, video, location, link…): they alone open the
48-hour window (a menu click, a follow or a QR scan opens 3 messages within 1 minute, too short for a
broadcast), and events are not what the day's figures count. An unsubscribe closes the window (WeChat
answers 45015 to an unsubscribed user)."""

from __future__ import annotations

import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import redis
from redis.typing import EncodableT

from bot.store import keys
from bot.store.days import day_hour_of, day_of
from bot.store.pushes import OnFirst

#: a place in the followers' list: a follower's last message time and openid
Place = tuple[float, str]

#: WeChat lets an account send customer-service messages this long after the user's last message
CS_WINDOW_SECONDS = 48 * 3600

#: One message, atomically: the day's users and messages, and the user's last message time (LAST_SEEN,
#: trimmed to the window), and for the console's list of followers their last message time and message
#: count (FOLLOWERS, follower_messages: kept FOLLOWER_TTL after a follower's last message).
#: k: the day's users, the day's messages, LAST_SEEN, FOLLOWERS, the user's message count. a: openid,
#: now, DAILY_TTL, the window, the exclusive lower bound of the window (ZREMRANGEBYSCORE's "(" syntax),
#: FOLLOWER_TTL, the exclusive lower bound of FOLLOWERS. `seen` runs it
#: alone; the webhook, inside the replay guard's script on a push's first delivery (`on_arrival`).
#: Then the console overview's history: k 6–8: the day's messages per hour, the hour's users, the day's
#: users estimate (HyperLogLog); a 8–10: the hour ("00"…"23"), HISTORY_TTL, HOURLY_TTL. Their EXPIRE
#: runs only when the write created something (a new hour's field, a new user), not for every message:
#: a key is still never left without its expiry, as each one is created inside this script.
SEEN_FUNCTION = """
local function seen(k, a)
    redis.call('SADD', k[1], a[1])
    redis.call('EXPIRE', k[1], a[3])
    redis.call('INCR', k[2])
    redis.call('EXPIRE', k[2], a[3])
    redis.call('ZADD', k[3], a[2], a[1])
    redis.call('ZREMRANGEBYSCORE', k[3], '-inf', a[5])
    redis.call('EXPIRE', k[3], a[4])
    redis.call('ZADD', k[4], a[2], a[1])
    redis.call('ZREMRANGEBYSCORE', k[4], '-inf', a[7])
    redis.call('EXPIRE', k[4], a[6])
    redis.call('INCR', k[5])
    redis.call('EXPIRE', k[5], a[6])
    if redis.call('HINCRBY', k[6], a[8], 1) == 1 then redis.call('EXPIRE', k[6], a[9]) end
    if redis.call('PFADD', k[7], a[1]) == 1 then redis.call('EXPIRE', k[7], a[10]) end
    if redis.call('PFADD', k[8], a[1]) == 1 then redis.call('EXPIRE', k[8], a[9]) end
end
"""
SEEN = SEEN_FUNCTION + "seen(KEYS, ARGV)\nreturn 1\n"
#: An unsubscribe, inside the webhook's arrival script: the user leaves LAST_SEEN (the window, the audience
#: of /broadcast). k: LAST_SEEN. a: openid. The day's figures and the followers' list keep what they wrote.
LEFT_FUNCTION = """
local function left(k, a)
    redis.call('ZREM', k[1], a[1])
end
"""


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

    def on_unsubscribe(self, openid: str) -> OnFirst:
        """An unsubscribe's first delivery, inside the webhook's arrival script: the customer-service
        window is closed (WeChat would answer 45015), so the user leaves /broadcast's audience."""
        return OnFirst(LEFT_FUNCTION, "left", [keys.LAST_SEEN], [openid])

    def _seen_call(self, openid: str) -> tuple[list[str], list[EncodableT]]:
        now = self.clock()
        day, hour = day_hour_of(self.zone, now)
        names = [keys.day_users(day), keys.day_messages(day), keys.LAST_SEEN]
        names += [keys.FOLLOWERS, keys.follower_messages(openid)]
        names += [keys.day_hours(day), keys.hour_users(day, hour), keys.day_users_estimate(day)]
        keep = keys.FOLLOWER_TTL
        args: list[EncodableT] = [openid, now, keys.DAILY_TTL, CS_WINDOW_SECONDS]
        args += [f"({now - CS_WINDOW_SECONDS}", keep, f"({now - keep}"]
        return names, [*args, hour, keys.HISTORY_TTL, keys.HOURLY_TTL]

    def users_today(self) -> int:
        return int(self.redis.scard(keys.day_users(day_of(self.zone, self.clock()))))

    def messages_today(self) -> int:
        return int(self.redis.get(keys.day_messages(day_of(self.zone, self.clock()))) or 0)

    def window_open(self, within: float = CS_WINDOW_SECONDS) -> list[str]:
        """Users who wrote within the customer-service window (LAST_SEEN keeps no more than that)."""
        return list(map(str, self.redis.zrangebyscore(keys.LAST_SEEN, self.clock() - within, "+inf")))

    def followers(self, limit: int = 100, before: Place | None = None) -> list[tuple[str, float, int]]:
        """Followers by their last message, newest first: (openid, last message time, messages in the
        FOLLOWER_TTL since they started writing after a silence that long). `before`: only those listed
        after that one (its last message time and openid) — a place that holds while followers write,
        where an offset moved everyone down one with each message."""
        found = self._after(limit, before) if before else self._newest(limit)
        if not found:
            return []
        counts = self.redis.mget([keys.follower_messages(openid) for openid, _ in found])
        return [(openid, at, int(count or 0)) for (openid, at), count in zip(found, counts, strict=True)]

    def _newest(self, limit: int) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = self.redis.zrevrange(  # type: ignore[assignment]
            keys.FOLLOWERS, 0, limit - 1, withscores=True
        )
        return [(str(openid), float(at)) for openid, at in found]

    def _after(self, limit: int, place: Place) -> list[tuple[str, float]]:
        """Who follows `place` in the list, in one round trip: those with its time and an openid before
        it (the list orders equal times by openid, descending), then those with an older time."""
        at, openid = place
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(keys.FOLLOWERS, at, at)
        pipe.zrevrangebyscore(keys.FOLLOWERS, f"({at!r}", "-inf", start=0, num=limit, withscores=True)
        tied, older = pipe.execute()
        same = sorted((str(other) for other in tied if str(other) < openid), reverse=True)
        rows = [(other, at) for other in same] + [(str(other), float(when)) for other, when in older]
        return rows[:limit]

    def follower(self, openid: str) -> tuple[float, int] | None:
        """One follower's last message time and message count; None if not seen in FOLLOWER_TTL."""
        at = self.redis.zscore(keys.FOLLOWERS, openid)
        if at is None:
            return None
        return float(at), int(self.redis.get(keys.follower_messages(openid)) or 0)

    def followers_count(self) -> int:
        return int(self.redis.zcard(keys.FOLLOWERS))

    # --- the console overview's history -----------------------------------------------------------
    def hours(self, day: str) -> list[tuple[int, int]]:
        """(messages, distinct users) in each hour of `day` (YYYYMMDD, TIMEZONE), hours 00–23; the users
        of hours older than HOURLY_TTL read as 0."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.day_hours(day))
        for hour in range(24):
            pipe.pfcount(keys.hour_users(day, f"{hour:02d}"))
        messages, *users = pipe.execute()
        return [(int(messages.get(f"{hour:02d}", 0)), int(users[hour])) for hour in range(24)]

    def days(self, days: list[str]) -> list[tuple[int, int]]:
        """(messages, distinct users, to within about 1 %) of each of `days`; 0 after HISTORY_TTL."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hvals(keys.day_hours(day))
            pipe.pfcount(keys.day_users_estimate(day))
        found = pipe.execute()
        return [(sum(map(int, found[2 * i])), int(found[2 * i + 1])) for i in range(len(days))]
