"""One round trip per push before its plan (PushLog.bind_signature): the replay guard, the delivery
count, an earlier delivery's plan and reply, and the day's statistics on the first delivery only; for a
push planned before it, the plan too (chosen by the rate count)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.limits import OVERRIDE_FIELD, Limits
from bot.store.pushes import Plan, Planned, PushLog
from bot.store.stats import DailyStats

NOW = 1_800_000_000.0
UNTIL = NOW + 300


def test_a_push_is_counted_and_its_retry_reads_the_first_plan(redis_client: redis.Redis) -> None:
    log = PushLog(redis_client)
    first = log.bind_signature("1800000000", "n1", "digest-1", UNTIL, NOW, "id:1")
    assert first is not None and (first.attempt, first.plan, first.reply) == (1, None, None)
    log.save_plan("id:1", Plan("reply", "hello"))
    log.save_reply("id:1", "hello")
    retry = log.bind_signature("1800000005", "n2", "digest-2", UNTIL, NOW, "id:1")  # WeChat re-signs
    assert retry is not None and (retry.attempt, retry.plan, retry.reply) == (
        2,
        Plan("reply", "hello"),
        "hello",
    )


def test_a_signature_with_another_request_is_a_replay_and_counts_nothing(redis_client: redis.Redis) -> None:
    log = PushLog(redis_client)
    assert log.bind_signature("1800000000", "n1", "digest-1", UNTIL, NOW, "id:1") is not None
    same = log.bind_signature("1800000000", "n1", "digest-1", UNTIL, NOW, "id:1")  # the same request again
    assert same is not None and same.attempt == 2
    assert log.bind_signature("1800000000", "n1", "forged", UNTIL, NOW, "id:2") is None
    assert not redis_client.exists("wxbot:msg:id:2")  # the forged push left no record


def test_a_url_check_binds_its_signature_and_counts_no_push(redis_client: redis.Redis) -> None:
    log = PushLog(redis_client)
    check = log.bind_signature("1800000000", "n1", "get-digest", UNTIL, NOW)
    assert check is not None and check.attempt == 0
    assert log.bind_signature("1800000000", "n1", "post-digest", UNTIL, NOW, "id:1") is None


def test_the_statistics_count_a_push_once_and_never_a_replay(redis_client: redis.Redis) -> None:
    log = PushLog(redis_client)
    stats = DailyStats(redis_client, ZoneInfo("Asia/Shanghai"), clock=lambda: NOW)
    log.bind_signature("1800000000", "n1", "d1", UNTIL, NOW, "id:1", stats.on_arrival("user-1"))
    log.bind_signature("1800000005", "n2", "d2", UNTIL, NOW, "id:1", stats.on_arrival("user-1"))  # retry
    log.bind_signature("1800000000", "n1", "forged", UNTIL, NOW, "id:9", stats.on_arrival("user-9"))
    log.bind_signature("1800000006", "n3", "d3", UNTIL, NOW, "id:2", stats.on_arrival("user-2"))
    assert (stats.users_today(), stats.messages_today()) == (2, 2)
    assert sorted(stats.window_open()) == ["user-1", "user-2"]


def test_the_guards_record_lives_as_long_as_its_timestamp_is_accepted(redis_client: redis.Redis) -> None:
    log = PushLog(redis_client)
    log.bind_signature("1800000000", "n1", "d1", NOW + 100, NOW, "id:1")
    ttl = int(redis_client.ttl("wxbot:signed:1800000000:n1"))
    assert 100 <= ttl <= 100 + 60 + 1


def test_a_push_planned_before_its_arrival_is_saved_by_it_and_its_retry_reads_that_plan(
    redis_client: redis.Redis,
) -> None:
    log = PushLog(redis_client)
    planned = Planned(Plan("reply", "help text"))
    first = log.bind_signature("1800000000", "n1", "d1", UNTIL, NOW, "id:1", (), planned)
    assert first is not None and (first.attempt, first.plan) == (1, Plan("reply", "help text"))
    retry = log.bind_signature("1800000005", "n2", "d2", UNTIL, NOW, "id:1", (), planned)
    assert retry is not None and (retry.attempt, retry.plan) == (2, Plan("reply", "help text"))
    assert log.plan("id:1", wait=0) == Plan("reply", "help text")  # where a later reader looks
    assert log.bind_signature("1800000000", "n1", "forged", UNTIL, NOW, "id:2", (), planned) is None
    assert not redis_client.exists("wxbot:msg:id:2")  # a replay saves no plan


def test_the_rate_count_of_the_arrival_chooses_a_planned_pushs_plan(redis_client: redis.Redis) -> None:
    """The rate part is the gate: over the limit in force (the console's override wins), the plan for a
    refused push is saved instead; a retry of it reads that one, and is not counted again."""
    limits = Limits(redis_client, 2, ZoneInfo("Asia/Shanghai"), clock=lambda: NOW)
    log = PushLog(redis_client)
    planned = Planned(Plan("reply", "help text"), if_refused=Plan("reply", "too fast"))

    def push(n: int, msg: str) -> Plan | None:
        arrival = log.bind_signature(
            "1800000000", f"n{n}", f"d{n}", UNTIL, NOW, msg, [limits.on_arrival("u")], planned, gate=1
        )
        assert arrival is not None
        return arrival.plan

    assert [push(1, "id:1"), push(2, "id:2"), push(3, "id:3")] == [
        planned.plan,
        planned.plan,
        Plan("reply", "too fast"),
    ]
    assert push(4, "id:3") == Plan("reply", "too fast")  # the retry: not counted
    assert int(redis_client.get(keys.rate("u", int(NOW // 60))) or 0) == 3
    redis_client.hset(keys.OVERRIDES, OVERRIDE_FIELD, "10")
    assert push(5, "id:5") == planned.plan


def test_an_unsubscribe_closes_the_window_in_the_arrival_and_keeps_the_days_figures(
    redis_client: redis.Redis,
) -> None:
    """WeChat answers 45015 to an unsubscribed user: the unsubscribe's arrival takes them out of the
    window (/broadcast's audience), in the same round trip; what they wrote today stays counted."""
    log = PushLog(redis_client)
    stats = DailyStats(redis_client, ZoneInfo("Asia/Shanghai"), clock=lambda: NOW)
    log.bind_signature("1800000000", "n1", "d1", UNTIL, NOW, "id:1", stats.on_arrival("user-1"))
    log.bind_signature("1800000000", "n2", "d2", UNTIL, NOW, "id:2", stats.on_arrival("user-2"))
    log.bind_signature("1800000001", "n3", "d3", UNTIL, NOW, "ev:user-1", stats.on_unsubscribe("user-1"))
    assert stats.window_open() == ["user-2"]
    assert (stats.users_today(), stats.messages_today()) == (2, 2)
