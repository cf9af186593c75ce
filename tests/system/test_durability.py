"""Durability: a job worker killed with SIGKILL mid-generation; the message is still answered once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from bot import texts
from bot.store import keys
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from tests.conftest import Bot

ROOT = Path(__file__).resolve().parents[2]
STREAMED = "这是一个会被打断的长回答。" * 30


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_worker_mid_generation_still_answers_once(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, start_worker_process: Callable[[], Any]
) -> None:
    bot = make_bot(with_worker=False)
    fake_openai.set_behavior(reply=STREAMED, chunk_size=6, chunk_delay=0.05)
    doomed = start_worker_process()
    sim = bot.simulator()
    sim.attempts = 1
    first_try = sim.send_text("user-1", "please answer")
    assert first_try.attempts[0].status == "timeout"
    wait_until(lambda: len(fake_openai.chat_requests()) == 1, timeout=20)
    time.sleep(0.3)  # mid-stream
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    start_worker_process()
    wait_until(lambda: len(fake_openai.chat_requests()) == 2, timeout=60)
    answer = bot.runtime.answers
    wait_until(lambda: _answer_status(answer, "user-1") == "done", timeout=30)
    fetched = bot.simulator().send_text("user-1", "继续")
    assert fetched.text is not None and STREAMED in fetched.text
    assert bot.simulator().send_text("user-1", "继续").text == texts.NOTHING_MORE
    time.sleep(1.0)
    assert len(fake_openai.chat_requests()) == 2  # regenerated once, not again


def _answer_status(store: Any, openid: str) -> str:
    owed = store.redis.lrange(keys.owed(openid), 0, -1)
    found = store.get(owed[0]) if owed else None
    return found.status if found is not None else "missing"


@pytest.mark.slow
def test_killed_worker_in_active_mode_sends_each_page_once(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    start_worker_process: Callable[..., Any],
) -> None:
    """Pages WeChat accepted are not sent again by the new run; at most the one page that was on its
    way when the worker died is sent twice (a page counts as sent only once WeChat accepted it)."""
    bot = make_bot(with_worker=False, wechat_reply_mode="active", wechat_max_reply_bytes=600)
    numbered = "".join(f"第{index}句。" for index in range(90))  # pages that differ from each other
    fake_openai.set_behavior(reply=numbered, chunk_size=6, chunk_delay=0.03)
    active = {"wechat_reply_mode": "active", "wechat_max_reply_bytes": 600}
    doomed = start_worker_process(config_overrides=active)
    assert bot.simulator().send_text("user-1", "please answer").acknowledged
    wait_until(lambda: len(fake_wechat.sent_texts("user-1")) >= 1, timeout=30)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    fake_openai.set_behavior(chunk_delay=0.0)  # the run that was killed was slow; the new one need not be
    start_worker_process(config_overrides=active)
    wait_until(lambda: len(fake_openai.chat_requests()) == 2, timeout=60)
    wait_until(lambda: "第89句。" in "".join(fake_wechat.sent_texts("user-1")), timeout=30)
    time.sleep(1.0)
    sent = fake_wechat.sent_texts("user-1")
    assert "".join(dict.fromkeys(sent)) == numbered  # every page, in order
    assert len(sent) - len(set(sent)) <= 1 and len(set(sent)) >= 2  # at most the page in flight twice


def test_a_run_that_lost_its_lease_writes_nothing(bot: Bot, redis_client: redis.Redis) -> None:
    """A duplicate run (its lease taken over) can neither add pages nor finish the answer."""
    from bot.store.answers import LeaseLost

    store = bot.runtime.answers
    answer_id = store.create("user-1", "q", owner="p", reserved_for=0, delivery="passive")
    answer = store.get(answer_id)
    assert answer is not None
    redis_client.set(keys.answer_lease(answer_id), "the-live-run")
    store.add_pages(answer, ["from the live run"], lease="the-live-run")
    with pytest.raises(LeaseLost):
        store.add_pages(answer, ["from a stale run"], lease="a-stale-run")
    with pytest.raises(LeaseLost):
        store.finish(answer, [], "done", lease="a-stale-run")
    fresh = store.get(answer_id)
    assert fresh is not None and fresh.page_count == 1 and fresh.status == "queued"


def test_the_lease_is_kept_alive_while_the_first_token_is_slow(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    """Without renewal on a timer the lease would lapse after 1 s and a redelivered job could start
    a second run; it must still be held after three lease lengths, while the model has not said a word."""
    bot = make_bot(job_lease_seconds=1.0)
    fake_openai.set_behavior(hold_after_chunks=1)  # the first token comes when the test releases it
    sim = bot.simulator()
    sim.attempts = 1
    sim.send_text("user-1", "slow first token")  # times out; the job goes on
    time.sleep(0.8)
    leases = redis_client.keys("wxbot:ans:*:lease")
    assert len(leases) == 1
    time.sleep(1.2)  # past the lease's own length
    assert redis_client.exists(leases[0]) == 1
    fake_openai.wait_holding()  # still before the first token
    fake_openai.release()
    wait_until(lambda: not redis_client.exists(leases[0]), timeout=15)  # released at the end


def test_a_run_that_lost_its_lease_hangs_up_on_the_llm(
    bot: Bot, fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    """A run whose lease another run has taken stops at its next page and closes its LLM stream at
    once, instead of paying for (and holding a connection to) an answer nobody will write."""
    fake_openai.set_behavior(reply="长" * 6000, chunk_size=20, chunk_delay=0.02)  # about 6 s of stream
    sim = bot.simulator()
    sim.attempts = 1
    sim.send_text("user-1", "a long answer please")
    redis = redis_client
    wait_until(lambda: bool(redis.keys("wxbot:ans:*:lease")), timeout=5)
    lease = str(redis.keys("wxbot:ans:*:lease")[0])
    answer_id = lease.split(":")[2]
    wait_until(lambda: bot.runtime.answers.page_count(answer_id) >= 1, timeout=5)
    redis.set(lease, "another-run")
    pages = bot.runtime.answers.page_count(answer_id)
    wait_until(lambda: fake_openai.hangups == 1, timeout=3)
    assert bot.runtime.answers.page_count(answer_id) == pages  # the stale run wrote nothing more


@pytest.mark.slow
def test_a_worker_killed_during_a_customer_service_send_loses_no_page(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    start_worker_process: Callable[..., Any],
) -> None:
    """A page counts as sent only once WeChat accepted it: the worker dies while WeChat holds the send
    of page 1 open, so WeChat never accepts it; the next run sends the whole text (a repeat of a page
    would be acceptable, a loss is not)."""
    active = {"wechat_reply_mode": "active", "wechat_max_reply_bytes": 600}
    bot = make_bot(with_worker=False, **active)
    numbered = "".join(f"第{index}句。" for index in range(120))  # pages that differ from each other
    fake_openai.set_behavior(reply=numbered, chunk_size=60, chunk_delay=0.0)
    fake_wechat.send_delay = 4.0  # the first send hangs
    doomed = start_worker_process(config_overrides=active)
    assert bot.simulator().send_text("user-1", "please answer").acknowledged
    wait_until(lambda: len(fake_wechat.requests_to("/cgi-bin/message/custom/send")) >= 1, timeout=30)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    fake_wechat.send_delay = 0.0
    start_worker_process(config_overrides=active)
    wait_until(lambda: "第119句。" in "".join(fake_wechat.sent_texts("user-1")), timeout=60)
    sent = fake_wechat.sent_texts("user-1")
    assert "".join(dict.fromkeys(sent)) == numbered  # every page arrived, in order
