"""The day for quotas and /stats follows TIMEZONE (default Asia/Shanghai), not the host's clock zone;
/stats counts today only."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from bot.store import days
from bot.store.days import day_hour_of, day_of
from bot.store.limits import Limits
from bot.store.metrics import Metrics
from bot.store.stats import DailyStats

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 2026-12-01 23:30 UTC is already 2026-12-02 07:30 in Beijing
LATE_UTC = datetime(2026, 12, 1, 23, 30, tzinfo=ZoneInfo("UTC")).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_day_is_beijings_whatever_the_hosts_zone() -> None:
    assert day_of(SHANGHAI, LATE_UTC) == "20261202"
    assert day_of(ZoneInfo("UTC"), LATE_UTC) == "20261201"


def test_the_daily_quota_starts_again_at_beijing_midnight(redis_client: redis.Redis) -> None:
    clock = Clock(LATE_UTC - 8 * 3600)  # 15:30 UTC = 23:30 in Beijing, 2026-12-01
    limits = Limits(redis_client, per_minute=0, zone=SHANGHAI, clock=clock)
    assert limits.admit("u", daily_quota=1) == "ok"
    assert limits.admit("u", daily_quota=1) == "quota"
    clock.now += 3600  # 00:30 in Beijing: a new day there, still 2026-12-01 in UTC
    assert limits.admit("u", daily_quota=1) == "ok"


def test_daily_users_and_messages_follow_the_zone(redis_client: redis.Redis) -> None:
    clock = Clock(LATE_UTC - 8 * 3600)
    stats = DailyStats(redis_client, SHANGHAI, clock=clock)
    stats.seen("a")
    stats.seen("a")
    assert (stats.users_today(), stats.messages_today()) == (1, 2)
    clock.now += 3600
    assert (stats.users_today(), stats.messages_today()) == (0, 0)
    stats.seen("b")
    assert (stats.users_today(), stats.messages_today()) == (1, 1)


def test_todays_metrics_leave_yesterday_out(redis_client: redis.Redis) -> None:
    clock = Clock(LATE_UTC - 8 * 3600)
    metrics = Metrics(redis_client, SHANGHAI, clock=clock)
    metrics.inc("pages_delivered", path="attempt_1")
    metrics.observe("llm_latency_seconds", 9.0, outcome="ok")
    clock.now += 3600  # the next day in Beijing
    metrics.inc("pages_delivered", path="attempt_1")
    metrics.observe("llm_latency_seconds", 1.0, outcome="ok")
    metrics.observe("llm_latency_seconds", 30.0, outcome="timeout")
    assert metrics.counter("pages_delivered") == {'{"path": "attempt_1"}': 2}
    assert metrics.counter("pages_delivered", today=True) == {'{"path": "attempt_1"}': 1}
    assert metrics.average("llm_latency_seconds", today=True, outcome="ok") == 1.0
    assert metrics.average("llm_latency_seconds", outcome="ok") == 5.0
    assert redis_client.ttl("wxbot:stats:20261202:metric:pages_delivered") > 0


def test_histograms_keep_their_labels_apart_in_prometheus(redis_client: redis.Redis) -> None:
    from prometheus_client import generate_latest

    metrics = Metrics(redis_client, SHANGHAI)
    metrics.observe("llm_latency_seconds", 0.2, outcome="ok")
    metrics.observe("llm_latency_seconds", 12.0, outcome="timeout")
    body = generate_latest(metrics.registry()).decode()
    assert 'wxbot_llm_latency_seconds_count{outcome="ok"} 1.0' in body
    assert 'wxbot_llm_latency_seconds_bucket{le="0.25",outcome="ok"} 1.0' in body
    assert 'wxbot_llm_latency_seconds_bucket{le="10.0",outcome="timeout"} 0.0' in body
    assert 'wxbot_llm_latency_seconds_sum{outcome="timeout"} 12.0' in body


@pytest.mark.parametrize(
    "zone",
    ["Asia/Shanghai", "UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns"],
)
def test_the_day_and_hour_of_every_minute_of_two_days_match_the_calendar(zone: str) -> None:
    """The quarter-hour memo agrees with the calendar, across midnights and the changes of summer time
    (Lord Howe Island moves by half an hour), asked in order and out of order."""
    tz = ZoneInfo(zone)
    starts = [
        datetime(2026, 4, 4, 12, tzinfo=tz).timestamp(),
        datetime(2026, 10, 3, 12, tzinfo=tz).timestamp(),
    ]
    moments = [start + minute * 60 + 7 for start in starts for minute in range(2 * 24 * 60)]
    for now in [*moments, *reversed(moments)]:
        moment = datetime.fromtimestamp(now, tz)
        assert day_hour_of(tz, now) == (moment.strftime("%Y%m%d"), moment.strftime("%H")), now
        assert day_of(tz, now) == moment.strftime("%Y%m%d")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("zone", "first", "then"),
    [
        # changes of summer time at 00:01 local time, one minute past a quarter hour of UTC
        ("Antarctica/Casey", utc(2022, 10, 1, 16, 0, 30), utc(2022, 10, 1, 16, 5)),
        ("America/Goose_Bay", utc(2010, 11, 7, 3, 0, 30), utc(2010, 11, 7, 3, 5)),
        ("America/St_Johns", utc(2010, 3, 14, 3, 30, 30), utc(2010, 3, 14, 3, 40)),
        # an offset of -0:44:30 (Liberia until 1972): its hours begin 14 min 30 s past a quarter hour
        ("Africa/Monrovia", utc(1971, 6, 1, 12, 30), utc(1971, 6, 1, 12, 44, 40)),
        # the first question of a quarter hour a fraction of a µs before its end: fromtimestamp rounds it up
        ("Asia/Shanghai", math.nextafter(utc(2026, 12, 1, 16), 0), utc(2026, 12, 1, 15, 50)),
    ],
)
def test_a_quarter_hour_in_which_the_hour_changes_is_not_memoised(
    monkeypatch: pytest.MonkeyPatch, zone: str, first: float, then: float
) -> None:
    """Not every change of a zone's offset, nor every offset, is at a quarter hour of UTC: the memo is
    kept only for a quarter hour whose first and last second have the same day and hour."""
    monkeypatch.setattr(days, "_last", {})
    tz = ZoneInfo(zone)
    for now in (first, then):
        local = datetime.fromtimestamp(now, tz)
        assert day_hour_of(tz, now) == (local.strftime("%Y%m%d"), local.strftime("%H")), now
