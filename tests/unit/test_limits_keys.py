"""Keys that used to grow without bound or expiry: the 48 h window of last messages, the per-user
model, the /auth failure counter — and the model a user may pick is one the operator allowed."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
import redis

from bot.store import keys
from bot.store.stats import CS_WINDOW_SECONDS, DailyStats
from bot.store.users import AdminStore, ModelChoices

NOON = 1796119200.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_last_seen_keeps_only_the_window(redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    stats = DailyStats(redis_client, ZoneInfo("UTC"), clock=clock)
    stats.seen("old")
    clock.now += CS_WINDOW_SECONDS - 1
    stats.seen("recent")
    assert sorted(stats.window_open()) == ["old", "recent"]
    clock.now += 2
    stats.seen("new")
    assert sorted(stats.window_open()) == ["new", "recent"]
    assert redis_client.zrange(keys.LAST_SEEN, 0, -1) == ["recent", "new"]  # trimmed, not just filtered
    assert 0 < redis_client.ttl(keys.LAST_SEEN) <= CS_WINDOW_SECONDS


def test_a_model_choice_expires_and_must_be_allowed(redis_client: redis.Redis) -> None:
    choices = ModelChoices(redis_client, ["gpt-4o-mini", "gpt-4o"])
    assert choices.get("u") is None
    choices.set("u", "gpt-4o")
    assert choices.get("u") == "gpt-4o"
    assert 0 < redis_client.ttl(keys.user_model("u")) <= keys.MODEL_CHOICE_TTL
    with pytest.raises(ValueError, match="not allowed"):
        choices.set("u", "o1-pro")
    assert choices.get("u") == "gpt-4o"


def test_a_choice_no_longer_allowed_is_not_used(redis_client: redis.Redis) -> None:
    ModelChoices(redis_client, ["gpt-4o-mini", "gpt-4o"]).set("u", "gpt-4o")
    narrowed = ModelChoices(redis_client, ["gpt-4o-mini"])  # ALLOWED_MODELS changed since
    assert narrowed.get("u") is None  # answers use the configured default
    assert narrowed.allowed == ["gpt-4o-mini"]


def test_auth_failures_always_expire(redis_client: redis.Redis) -> None:
    store = AdminStore(redis_client, [])
    store.redeem("u", "wrong")
    assert 0 < redis_client.ttl(keys.auth_failures("u")) <= keys.AUTH_FAILURE_WINDOW
    # a counter left without expiry (a failure between INCR and EXPIRE in an earlier version) gets one
    redis_client.set(keys.auth_failures("v"), 2)
    assert store.redeem("v", "wrong") is False
    assert redis_client.get(keys.auth_failures("v")) == "3"
    assert 0 < redis_client.ttl(keys.auth_failures("v")) <= keys.AUTH_FAILURE_WINDOW


def test_the_auth_window_starts_with_the_first_failure(redis_client: redis.Redis) -> None:
    store = AdminStore(redis_client, [])
    store.redeem("u", "wrong")
    redis_client.expire(keys.auth_failures("u"), 100)  # as if most of the hour had gone by
    store.redeem("u", "wrong again")
    assert 0 < redis_client.ttl(keys.auth_failures("u")) <= 100  # later failures do not extend it
