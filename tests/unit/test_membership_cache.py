"""Admins and bans are read from a copy each process keeps MEMBERSHIP_TTL seconds: a change made in
the process applies at once, one made in another process within MEMBERSHIP_TTL (a scripted clock)."""

from __future__ import annotations

import redis

from bot.store.users import MEMBERSHIP_TTL, AdminStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ban_applies_at_once_here_and_within_the_ttl_elsewhere(redis_client: redis.Redis) -> None:
    here_clock, there_clock = Clock(), Clock()
    here = AdminStore(redis_client, [], clock=here_clock)
    there = AdminStore(redis_client, [], clock=there_clock)
    assert not here.is_banned("user-9") and not there.is_banned("user-9")
    here.ban("user-9")
    assert here.is_banned("user-9")
    assert not there.is_banned("user-9")  # its copy is fresh: read less than MEMBERSHIP_TTL ago
    there_clock.now += MEMBERSHIP_TTL
    assert there.is_banned("user-9")
    there.unban("user-9")
    assert not there.is_banned("user-9")
    here_clock.now += MEMBERSHIP_TTL
    assert not here.is_banned("user-9")


def test_an_auth_makes_an_admin_at_once_in_its_process(redis_client: redis.Redis) -> None:
    clock = Clock()
    store = AdminStore(redis_client, ["owner"], clock=clock)
    assert store.is_admin("owner") and not store.is_admin("user-1")
    assert store.redeem("user-1", store.new_code()) is True
    assert store.is_admin("user-1")  # the same instant: no wait for the copy to age
    assert store.admins() == ["owner", "user-1"]
