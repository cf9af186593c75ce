"""The history keeps turns in the order of their questions: in a burst the later question's answer often
ends first, and the next prompt read the two turns the wrong way round."""

from __future__ import annotations

import json

import redis

from bot.store import keys
from bot.store.history import History


def history(client: redis.Redis, max_turns: int = 10) -> History:
    return History(client, max_turns=max_turns, max_chars=10_000, ttl=60)


def questions(found: History, openid: str = "u") -> list[str]:
    return [m["content"] for m in found.messages(openid) if m["role"] == "user"]


def test_a_turn_that_ends_late_goes_before_the_turns_of_later_questions(redis_client: redis.Redis) -> None:
    kept = history(redis_client)
    kept.add_turn("u", "q2", "a2", asked=2.0)  # the second question's answer ended first
    kept.add_turn("u", "q3", "a3", asked=3.0)
    kept.add_turn("u", "q1", "a1", asked=1.0)
    kept.add_turn("u", "q4", "a4", asked=4.0)
    kept.add_turn("u", "q2.5", "a2.5", asked=2.5)
    assert questions(kept) == ["q1", "q2", "q2.5", "q3", "q4"]
    messages = kept.messages("u")
    assert [m["role"] for m in messages] == ["user", "assistant"] * 5
    assert messages[1] == {"role": "assistant", "content": "a1"}
    assert all("at" not in m for m in messages)  # what the model reads has no times


def test_the_prompt_reads_the_burst_in_the_order_it_was_asked(redis_client: redis.Redis) -> None:
    kept = history(redis_client)
    kept.add_turn("u", "什么是 Redis？", "一个内存数据库。", asked=10.0)
    kept.add_turn("u", "它和 Memcached 有什么区别？", "区别是……", asked=20.0)
    kept.add_turn("u", "先问的", "先问的回答", asked=5.0)
    prompt = kept.prompt("u", "system", "哪个更快？")
    assert [m["content"] for m in prompt if m["role"] == "user"] == [
        "先问的",
        "什么是 Redis？",
        "它和 Memcached 有什么区别？",
        "哪个更快？",
    ]


def test_trimming_keeps_the_latest_questions(redis_client: redis.Redis) -> None:
    kept = history(redis_client, max_turns=2)
    kept.add_turn("u", "q3", "a3", asked=3.0)
    kept.add_turn("u", "q2", "a2", asked=2.0)
    kept.add_turn("u", "q1", "a1", asked=1.0)  # older than both kept turns: it goes, they stay
    assert questions(kept) == ["q2", "q3"]
    assert redis_client.ttl(keys.history("u")) > 0


def test_turns_stored_before_the_times_were_kept_stay_first(redis_client: redis.Redis) -> None:
    """A history written by the previous version (no `at`): its turns count as earlier than any new one."""
    old = [{"role": "user", "content": "old q"}, {"role": "assistant", "content": "old a"}]
    redis_client.rpush(keys.history("u"), *(json.dumps(m, ensure_ascii=False) for m in old))
    kept = history(redis_client)
    kept.add_turn("u", "new q", "new a", asked=1.0)
    kept.add_turn("u", "newer q", "newer a", asked=0.5)
    assert questions(kept) == ["old q", "newer q", "new q"]


def test_a_turn_with_the_same_time_goes_after(redis_client: redis.Redis) -> None:
    kept = history(redis_client)
    kept.add_turn("u", "first", "1", asked=1.0)
    kept.add_turn("u", "second", "2", asked=1.0)
    assert questions(kept) == ["first", "second"]
