"""Per-user limits: what each kind of work counts against, atomically, with every counter expiring."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.limits import Limits
from bot.store.pushes import PushLog

UTC = ZoneInfo("UTC")
#: 2026-12-01 10:00:00 UTC, the start of a minute
NOON = 1796119200.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(redis_client: redis.Redis, per_minute: int = 0) -> tuple[Limits, Clock]:
    clock = Clock(NOON)
    return Limits(redis_client, per_minute=per_minute, zone=UTC, clock=clock), clock


def test_images_have_their_own_daily_quota(redis_client: redis.Redis) -> None:
    limits, clock = make(redis_client)
    assert limits.admit("u", daily_quota=0, image_quota=2) == "ok"
    assert limits.admit("u", daily_quota=0, image_quota=2) == "ok"
    assert limits.admit("u", daily_quota=0, image_quota=2) == "images"
    assert limits.admit("u", daily_quota=0) == "ok"  # questions go on
    assert limits.admit("other", daily_quota=0, image_quota=2) == "ok"
    clock.now += 86400
    assert limits.admit("u", daily_quota=0, image_quota=2) == "ok"


def test_an_image_counts_as_a_question_too(redis_client: redis.Redis) -> None:
    limits, _ = make(redis_client)
    assert limits.admit("u", daily_quota=2, image_quota=5) == "ok"
    assert limits.admit("u", daily_quota=2) == "ok"
    assert limits.admit("u", daily_quota=2, image_quota=5) == "quota"
    assert limits.admit("u", daily_quota=3, image_quota=5) == "ok"  # /quota raised: one more


def test_a_refused_message_uses_no_quota(redis_client: redis.Redis) -> None:
    limits, _ = make(redis_client)
    assert limits.admit("u", daily_quota=1, image_quota=1) == "ok"
    assert limits.admit("u", daily_quota=2, image_quota=1) == "images"  # refused: the question not counted
    assert limits.admit("u", daily_quota=2) == "ok"
    assert limits.admit("u", daily_quota=2) == "quota"


def test_a_command_counts_against_the_rate_only(redis_client: redis.Redis) -> None:
    limits, clock = make(redis_client, per_minute=3)
    assert limits.admit("u", daily_quota=None) == "ok"
    assert limits.admit("u", daily_quota=1) == "ok"
    assert limits.admit("u", daily_quota=None) == "ok"
    assert limits.admit("u", daily_quota=None) == "rate"
    assert limits.admit("u", daily_quota=1) == "rate"
    clock.now += 60
    assert limits.admit("u", daily_quota=None) == "ok"  # a command needs no quota left
    assert limits.admit("u", daily_quota=1) == "quota"


def test_a_rate_refused_question_uses_no_quota(redis_client: redis.Redis) -> None:
    limits, clock = make(redis_client, per_minute=1)
    assert limits.admit("u", daily_quota=None) == "ok"
    assert limits.admit("u", daily_quota=1) == "rate"
    clock.now += 60
    assert limits.admit("u", daily_quota=1) == "ok"


def test_every_counter_expires(redis_client: redis.Redis) -> None:
    limits, _ = make(redis_client, per_minute=1)
    limits.admit("u", daily_quota=1, image_quota=1)
    limits.admit("u", daily_quota=1, image_quota=1)  # rate-refused
    found = redis_client.keys("wxbot:*")
    assert sorted(found) == sorted(
        [keys.rate("u", int(NOON // 60)), keys.usage("20261201", "u"), keys.image_usage("20261201", "u")]
    )
    assert 0 < redis_client.ttl(keys.rate("u", int(NOON // 60))) <= keys.RATE_TTL
    assert 0 < redis_client.ttl(keys.usage("20261201", "u")) <= keys.DAILY_TTL
    assert 0 < redis_client.ttl(keys.image_usage("20261201", "u")) <= keys.DAILY_TTL


def test_a_message_counted_on_arrival_is_checked_without_counting_it_again(redis_client: redis.Redis) -> None:
    limits, _ = make(redis_client, per_minute=2)
    log = PushLog(redis_client)
    tickets = []
    for n in range(3):
        part = limits.on_arrival("u")
        arrival = log.bind_signature(
            "1800000000", f"n{n}", f"d{n}", 1_800_000_300.0, 1_800_000_000.0, f"id:{n}", [part]
        )
        assert arrival is not None
        tickets.append(limits.ticket(part, arrival.first[0]))
    assert [limits.admit("u", daily_quota=None, ticket=t) for t in tickets] == ["ok", "ok", "rate"]
    assert limits.admit("u", daily_quota=None) == "rate"  # 4 counted in all, no more


def test_a_count_no_check_used_is_taken_back(redis_client: redis.Redis) -> None:
    limits, _ = make(redis_client, per_minute=1)
    part = limits.on_arrival("u")
    arrival = PushLog(redis_client).bind_signature(
        "1800000000", "n", "d", 1_800_000_300.0, 1_800_000_000.0, "id:1", [part]
    )
    assert arrival is not None
    pipe = redis_client.pipeline()
    limits.unused_in(pipe, limits.ticket(part, arrival.first[0]))  # e.g. 继续: no check
    pipe.execute()
    assert limits.admit("u", daily_quota=None) == "ok"  # the one message a minute is still free
