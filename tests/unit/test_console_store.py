"""The console's stores on a real Redis, with an injected clock: login links (once, by digest, expiring),
sessions (expiring, ended one by one or all of an admin's), the followers' list (trimmed to its
retention), and the run-time overrides that the rate limiter, the moderator and /model read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import redis

from bot.config import load_settings
from bot.media.moderation import Moderator
from bot.store import keys
from bot.store.console import LOGIN_TTL, SESSION_TTL, ConsoleStore
from bot.store.limits import Limits
from bot.store.overrides import Overrides
from bot.store.stats import DailyStats
from bot.store.users import ModelChoices

NOON = 1796119200.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_login_token_is_stored_by_digest_and_redeemed_once(redis_client: redis.Redis) -> None:
    store = ConsoleStore(redis_client, clock=Clock(NOON))
    token = store.new_login("admin")
    assert len(token) == 43
    assert all(token not in key for key in redis_client.keys("*"))
    with ThreadPoolExecutor(8) as pool:  # eight browsers open it at once: one wins
        found = list(pool.map(lambda _: store.redeem_login(token), range(8)))
    assert found.count("admin") == 1 and found.count(None) == 7


def test_a_login_token_expires_by_its_own_record(redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    store = ConsoleStore(redis_client, clock=clock)
    token, later = store.new_login("admin"), store.new_login("admin")
    clock.now += LOGIN_TTL - 1
    assert store.redeem_login(later) == "admin"
    clock.now += 2
    assert store.redeem_login(token) is None


def test_a_session_expires_and_logout_ends_one_or_all(redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    store = ConsoleStore(redis_client, clock=clock)
    first, session = store.new_session("admin")
    second, _ = store.new_session("admin")
    other, _ = store.new_session("colleague")
    assert store.session(first) == session and session.expires == NOON + SESSION_TTL
    assert store.session(first[:-1] + "x") is None and store.session("") is None

    store.end_session(first)
    assert store.session(first) is None and store.session(second) is not None
    assert store.end_all("admin") == 1
    assert store.session(second) is None and store.session(other) is not None
    clock.now += SESSION_TTL
    assert store.session(other) is None


def test_followers_are_listed_newest_first_and_kept_for_their_retention(redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    stats = DailyStats(redis_client, ZoneInfo("UTC"), clock=clock)
    stats.seen("old")
    clock.now += 60
    stats.seen("new")
    stats.seen("new")
    assert stats.followers() == [("new", NOON + 60, 2), ("old", NOON, 1)]
    clock.now += keys.FOLLOWER_TTL
    stats.seen("newest")
    assert [openid for openid, _, _ in stats.followers()] == ["newest", "new"]  # "old" trimmed
    assert 0 < redis_client.ttl(keys.follower_messages("newest")) <= keys.FOLLOWER_TTL
    assert stats.follower("old") is None and stats.followers_count() == 2


def test_pages_of_followers_take_each_once_also_those_who_wrote_at_the_same_time(
    redis_client: redis.Redis,
) -> None:
    clock = Clock(NOON)
    stats = DailyStats(redis_client, ZoneInfo("UTC"), clock=clock)
    for at, openids in (
        (NOON, ["older"]),
        (NOON + 1, ["t-a", "t-b", "t-c", "t-d", "t-e"]),
        (NOON + 1.5, ["new"]),
    ):
        clock.now = at
        for openid in openids:
            stats.seen(openid)
    pages = [stats.followers(2)]  # pages of 2: a page ends among those who wrote at the same time
    while len(pages[-1]) == 2:
        openid, at, _ = pages[-1][-1]
        pages.append(stats.followers(2, (at, openid)))
    shown = [openid for page in pages for openid, _, _ in page]
    assert shown == list(redis_client.zrevrange(keys.FOLLOWERS, 0, -1))  # the list's own order
    assert shown == ["new", "t-e", "t-d", "t-c", "t-b", "t-a", "older"]


def test_the_overrides_reach_the_rate_limiter_the_moderator_and_model_choices(
    redis_client: redis.Redis,
) -> None:
    settings = load_settings(
        wechat_token="t",
        redis_url="redis://x",
        openai_api_key="k",
        sensitive_words=["甲"],
        user_rate_per_minute=1,
    )
    overrides = Overrides(redis_client, settings)
    limits = Limits(redis_client, overrides.rate_per_minute, ZoneInfo("UTC"), clock=Clock(NOON))
    moderator = Moderator(settings, words=overrides.sensitive_words)
    models = ModelChoices(redis_client, ["default", "a", "b"], overrides.allowed_models)

    assert limits.admit("u") == "ok" and limits.admit("u") == "rate"
    assert moderator.mask("甲乙") == "*乙"
    assert models.allowed == ["default", "a", "b"]

    overrides.set("rate_per_minute", "0")
    overrides.set_list("sensitive_words", ["乙乙乙"])
    overrides.set_list("allowed_models", ["b"])
    assert limits.admit("u") == "ok"
    assert moderator.mask("甲乙乙乙") == "甲***" and moderator.longest == 3
    assert models.allowed == ["default", "b"]

    for name in ("rate_per_minute", "sensitive_words", "allowed_models"):
        overrides.clear(name)
    assert moderator.mask("甲乙") == "*乙" and models.allowed == ["default", "a", "b"]
    assert overrides.overridden() == frozenset()
