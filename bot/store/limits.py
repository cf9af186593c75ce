"""Per-user limits (messages per minute; questions and images per day), in Redis so that every process
counts the same."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import redis
from redis.client import Pipeline
from redis.typing import EncodableT

from bot.store import keys
from bot.store.days import day_of
from bot.store.pushes import OnFirst

#: "ok", or what refused: the rate limit, the daily question quota, the daily image quota
Verdict = Literal["ok", "rate", "quota", "images"]

#: The daily counters of one admitted message: each checked, then all counted only when every one admits
#: it — nothing to take back, and every counter gets its expiry in the same step as its increment (no key
#: left without one). k: the counters; a: their TTL, then one limit per counter (0: counted, no limit).
#: Returns 0 (admitted) or the 1-based number of the counter that is full.
DAILY_FUNCTION = """
local function daily(k, a)
    for i = 1, #k do
        local limit = tonumber(a[i + 1])
        if limit > 0 and tonumber(redis.call('GET', k[i]) or '0') >= limit then return i end
    end
    for i = 1, #k do
        redis.call('INCR', k[i])
        redis.call('EXPIRE', k[i], a[1])
    end
    return 0
end
"""

#: One message, atomically: counted against the rate limit (refused or not, so that hammering keeps a
#: user limited), then against each daily counter only when every limit admits it.
#: KEYS: the minute's rate counter, OVERRIDES, then the daily counters. ARGV: the environment's per-minute
#: limit (0: none), the rate counter's TTL, the override's field, then DAILY's arguments. The limit in
#: force is the console's run-time override (OVERRIDES' field OVERRIDE_FIELD, written by
#: bot/store/overrides.py) or else the environment's: read here, so that the override costs no round trip.
#: Returns 0 (admitted), -1 (rate) or the 1-based number of the daily counter that is full.
ADMIT = (
    DAILY_FUNCTION
    + """
local in_minute = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local limit = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '') or tonumber(ARGV[1])
if limit > 0 and in_minute > limit then return -1 end
local k, a = {}, {}
for i = 3, #KEYS do k[#k + 1] = KEYS[i] end
for i = 4, #ARGV do a[#a + 1] = ARGV[i] end
return daily(k, a)
"""
)
OVERRIDE_FIELD = "rate_per_minute"
#: The daily counters alone, for a message whose rate was counted on arrival (`RateTicket`).
DAILY = DAILY_FUNCTION + "return daily(KEYS, ARGV)\n"

#: The arrival script's part (bot/store/pushes.py `OnFirst`) for a chat message's first delivery: count
#: it against the sender's per-minute rate, and read the run-time override of the limit.
#: k: the minute's rate counter, OVERRIDES. a: the counter's TTL, the override's field, the environment's
#: limit. Returns {count, override or false, 1 if over the limit in force else 0}: the third value lets
#: the arrival script choose the plan of a push planned before it (`Planned.if_refused`).
RATE_FUNCTION = """
local function rate(k, a)
    local count = redis.call('INCR', k[1])
    redis.call('EXPIRE', k[1], a[1])
    local override = redis.call('HGET', k[2], a[2])
    local limit = tonumber(override or '') or tonumber(a[3])
    return {count, override, (limit > 0 and count > limit) and 1 or 0}
end
"""


@dataclass
class RateTicket:
    """A chat message already counted against its sender's per-minute rate, by the arrival script (no
    round trip of its own). The first check of the message (`Limits.admit`) uses it; a message that no
    check used (a 继续, an admin's, a banned user's) is taken back off the count (`Limits.unused_in`), so
    that what counts is exactly what it was before the count moved into the arrival script."""

    key: str
    count: int
    limit: int
    used: bool = False


class Limits:
    def __init__(
        self,
        client: redis.Redis,
        per_minute: int | Callable[[], int],
        zone: ZoneInfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`per_minute`: the environment's limit (USER_RATE_PER_MINUTE); a run-time override in OVERRIDES
        wins over it, read inside the scripts."""
        self.redis = client
        self._per_minute = per_minute
        self.zone = zone
        self.clock = clock
        self._admit = client.register_script(ADMIT)
        self._daily = client.register_script(DAILY)

    @property
    def per_minute(self) -> int:
        """The environment's limit (a callable, as older callers pass, is read each time)."""
        return self._per_minute() if callable(self._per_minute) else self._per_minute

    def on_arrival(self, openid: str) -> OnFirst:
        """The arrival script's part that counts a chat message against the rate (see RATE_FUNCTION)."""
        names = [keys.rate(openid, int(self.clock() // 60)), keys.OVERRIDES]
        return OnFirst(RATE_FUNCTION, "rate", names, [keys.RATE_TTL, OVERRIDE_FIELD, self.per_minute])

    def ticket(self, part: OnFirst, counted: Any) -> RateTicket | None:
        """What the arrival's `part` (from `on_arrival`) returned, as a ticket; None when it did not run
        (not a first delivery)."""
        if not counted:
            return None
        count, override = counted[:2]
        limit = int(override) if override is not None else self.per_minute
        return RateTicket(str(part.keys[0]), int(count), limit)

    def unused_in(self, pipe: Pipeline, ticket: RateTicket | None) -> None:
        """Take back the arrival's count of a message that no check used (queued in the push's pipeline)."""
        if ticket is not None and not ticket.used:
            pipe.decr(ticket.key)

    def admit(
        self,
        openid: str,
        daily_quota: int | None = 0,
        image_quota: int | None = None,
        ticket: RateTicket | None = None,
    ) -> Verdict:
        """Count one message against the rate limit and, when admitted, against the daily counters it
        uses: questions (`daily_quota`) and images (`image_quota`). None: the message does not use that
        counter (a command uses neither); 0: counted, without a limit. With the message's `ticket` its
        rate was counted on arrival: a command then costs no round trip at all."""
        if ticket is not None and daily_quota is None and image_quota is None:
            return "rate" if self._over_rate(ticket) else "ok"  # a command: no round trip
        now = self.clock()
        day = day_of(self.zone, now)
        uses: list[tuple[str, int | None, Verdict]] = [
            (keys.usage(day, openid), daily_quota, "quota"),
            (keys.image_usage(day, openid), image_quota, "images"),
        ]
        counters = [(counter, quota, verdict) for counter, quota, verdict in uses if quota is not None]
        names = [counter for counter, _, _ in counters]
        daily_args: list[EncodableT] = [keys.DAILY_TTL, *(quota or 0 for _, quota, _ in counters)]
        if ticket is None:
            found = int(
                self._admit(
                    keys=[keys.rate(openid, int(now // 60)), keys.OVERRIDES, *names],
                    args=[self.per_minute, keys.RATE_TTL, OVERRIDE_FIELD, *daily_args],
                )
            )
        else:  # counted on arrival: the daily counters alone
            found = -1 if self._over_rate(ticket) else int(self._daily(keys=names, args=daily_args))
        if found == -1:
            return "rate"
        return "ok" if found == 0 else counters[found - 1][2]

    @staticmethod
    def _over_rate(ticket: RateTicket) -> bool:
        """Whether the message counted on arrival is over the limit (and so the ticket is used)."""
        ticket.used = True
        return ticket.limit > 0 and ticket.count > ticket.limit
