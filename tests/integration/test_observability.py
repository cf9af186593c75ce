"""Metrics after real pushes, /metrics access control, one log line per push, undelivered records."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import ATTEMPT_TIMEOUT, Bot


def scrape(bot: Bot, **headers: str) -> tuple[int, str]:
    response = bot.app.test_client().get("/metrics", headers=headers)
    return response.status_code, response.get_data(as_text=True)


def test_metrics_count_messages_paths_and_duplicates(bot: Bot, fake_openai: FakeOpenAI) -> None:
    sim = bot.simulator()
    sim.send_text("user-1", "fast")
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 1.3)
    sim.send_text("user-1", "second attempt")
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 3.3)
    assert sim.send_text("user-1", "late").text == texts.STILL_WORKING
    # the late answer is done, its measurements written (after its end: a reply never waits for them)
    wait_for(lambda: "wxbot_first_page_seconds_count 3.0" in scrape(bot)[1], what="the late answer")
    sim.send_text("user-1", "继续")
    sim.send_event("user-2", "subscribe")
    status, body = scrape(bot)
    assert status == 200
    assert 'wxbot_pages_delivered_total{path="attempt_1"} 1.0' in body
    assert 'wxbot_pages_delivered_total{path="attempt_2"} 1.0' in body
    assert 'wxbot_pages_delivered_total{path="next_message"} 1.0' in body
    assert 'wxbot_messages_total{kind="text"} 4.0' in body
    assert 'wxbot_messages_total{kind="event:subscribe"} 1.0' in body
    assert "wxbot_duplicates_total 3.0" in body  # 1 retry + 2 retries
    assert 'wxbot_undelivered_total{reason="late"} 1.0' in body
    assert 'wxbot_llm_latency_seconds_count{outcome="ok"} 3.0' in body
    assert "wxbot_first_page_seconds_count 3.0" in body
    assert "wxbot_queue_depth 0.0" in body


def test_metrics_are_not_public_through_a_proxy(bot: Bot) -> None:
    assert scrape(bot, **{"X-Forwarded-For": "203.0.113.9"})[0] == 403


def test_metrics_token_is_required_when_set(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(with_worker=False, metrics_token="s3cret")
    assert scrape(bot)[0] == 403
    assert scrape(bot, Authorization="Bearer s3cret")[0] == 200


def test_refused_customer_service_send_is_recorded_with_its_code(
    make_bot: Callable[..., Bot], fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(wechat_reply_mode="active")
    fake_wechat.fail_sends(45015)
    bot.simulator().send_text("user-1", "hi")
    deadline = time.monotonic() + 10
    while not bot.runtime.metrics.undelivered_records() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = bot.runtime.metrics.undelivered_records()
    assert record["openid"] == "user-1" and record["reason"].startswith("cs_refused:45015")
    body = scrape(bot)[1]
    assert 'wxbot_customer_service_failures_total{errcode="45015"} 1.0' in body
    assert "wxbot_pages_delivered_total{" not in body  # a refused send delivered nothing


def test_failed_llm_calls_are_measured_with_their_outcome(bot: Bot, fake_openai: FakeOpenAI) -> None:
    """A dashboard of successful calls only would hide an outage: failures enter the histogram too."""
    fake_openai.set_behavior(fail_status=400)  # not retried by the SDK
    reply = bot.simulator().send_text("user-1", "hi")
    assert reply.text == texts.LLM_FAILED
    body = scrape(bot)[1]
    assert 'wxbot_llm_latency_seconds_count{outcome="failed"} 1.0' in body
    assert 'wxbot_job_failures_total{reason="failed"} 1.0' in body


def test_one_json_log_line_per_push_without_content(
    make_bot: Callable[..., Bot], capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(log_format="json")
    bot.simulator().send_text("user-1", "my secret question")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    pushes = [line for line in lines if line.get("plan") == "ask"]
    assert len(pushes) == 1
    assert pushes[0]["attempt"] == 1 and pushes[0]["openid"] == "user-1" and pushes[0]["request_id"] != "-"
    assert "my secret question" not in json.dumps(lines, ensure_ascii=False)
