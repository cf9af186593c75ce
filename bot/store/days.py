"""The day (for quotas and daily statistics) in the operator's time zone (setting TIMEZONE), not the
host's: mixed hosts and a UTC container image must agree on when "today" starts."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo


def day_of(zone: ZoneInfo, now: float | None = None) -> str:
    """YYYYMMDD of `now` (a Unix time; default: the current time) in `zone`."""
    return datetime.fromtimestamp(time.time() if now is None else now, zone).strftime("%Y%m%d")


def day_hour_of(zone: ZoneInfo, now: float) -> tuple[str, str]:
    """YYYYMMDD and the hour ("00"…"23") of `now` in `zone` (the console's per-hour figures)."""
    moment = datetime.fromtimestamp(now, zone)
    return moment.strftime("%Y%m%d"), moment.strftime("%H")
