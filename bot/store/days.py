"""The day (for quotas and daily statistics) in the operator's time zone (setting TIMEZONE), not the
host's: mixed hosts and a UTC container image must agree on when "today" starts."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

#: a zone's offset from UTC, and nearly every change of it, is a whole number of quarter hours, at a
#: quarter hour: within such a quarter hour of UTC a zone's day and hour stay the same. Not all: summer
#: time began at 00:01 local time in Newfoundland and Labrador until 2011 and at Casey station in
#: 2020-2022; Liberia was 0:44:30 behind UTC until 1972. A quarter hour is memoised only when its
#: first and last second have the same day, hour and offset.
QUARTER_HOUR = 900
#: the last quarter hour asked for, per zone, and its day and hour: a push asks three times (its
#: statistics, its metric, its rate), a busy minute thousands of times
_last: dict[ZoneInfo, tuple[int, tuple[str, str]]] = {}


def day_of(zone: ZoneInfo, now: float | None = None) -> str:
    """YYYYMMDD of `now` (a Unix time; default: the current time) in `zone`."""
    return day_hour_of(zone, time.time() if now is None else now)[0]


def day_hour_of(zone: ZoneInfo, now: float) -> tuple[str, str]:
    """YYYYMMDD and the hour ("00"…"23") of `now` in `zone` (the console's per-hour figures); worked
    out once per quarter hour of UTC (QUARTER_HOUR)."""
    quarter = int(now // QUARTER_HOUR)
    cached = _last.get(zone)
    if cached is not None and cached[0] == quarter:
        return cached[1]
    moment = datetime.fromtimestamp(now, zone)
    found = moment.strftime("%Y%m%d"), moment.strftime("%H")
    start = quarter * QUARTER_HOUR
    first = datetime.fromtimestamp(start, zone)
    last = datetime.fromtimestamp(start + QUARTER_HOUR - 1, zone)
    # `moment` too: fromtimestamp rounds to the µs, a quarter hour's last instant to the next one's start
    if first.utcoffset() == last.utcoffset() and _hour(first) == _hour(last) == _hour(moment):
        _last[zone] = (quarter, found)
    return found


def _hour(moment: datetime) -> tuple[int, int, int, int]:
    return moment.year, moment.month, moment.day, moment.hour
