"""The console's overview after real traffic (the webhook, a real job worker, the loopback fakes), its
per-hour and per-day history in TIMEZONE across an hour's and a day's boundary (an injected clock),
the retention of every history key, the machinery, and the page itself: charts, no secrets, no script."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis
from flask.testing import FlaskClient

from bot import texts
from bot.console import figures
from bot.store import keys
from testing.console import login
from testing.fakes.openai_server import FakeOpenAI
from testing.pages import PUBLIC_BASE
from testing.patience import wait_for
from tests.conftest import AES_KEY, ATTEMPT_TIMEOUT, SECRET, Bot

ADMIN = "admin-overview"
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 2026-12-01 23:30 in Beijing (15:30 UTC)
BEFORE_MIDNIGHT = datetime(2026, 12, 1, 23, 30, tzinfo=SHANGHAI).timestamp()
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def console_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN], allowed_models=["gpt-4o"])


@pytest.fixture
def quiet_bot(make_bot: Callable[..., Bot]) -> Bot:
    """No job worker: for the figures written straight into the stores."""
    return make_bot(with_worker=False, public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN])


def on_clock(bot: Bot, clock: Clock) -> None:
    """The stores that date what they count read `clock`."""
    bot.runtime.stats.clock = clock
    bot.runtime.metrics.clock = clock


def page(client: FlaskClient) -> str:
    response = client.get("/console/")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


# --- real traffic ----------------------------------------------------------------------------------


def first_pages(bot: Bot) -> int:
    """First pages made so far (the count of the first_page_seconds histogram, all time)."""
    body = bot.app.test_client().get("/metrics").get_data(as_text=True)
    found = re.search(r"^wxbot_first_page_seconds_count (\S+)$", body, re.M)
    return int(float(found.group(1))) if found else 0


def clear_of_midnight(margin: float = 120.0) -> None:
    """Real traffic is dated by the real clock: a run that would straddle midnight in Beijing (16:00
    UTC) waits until the new day has begun, so that all of its messages fall on one day."""
    now = datetime.now(SHANGHAI)
    left = 86400 - (now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < margin:
        time.sleep(left + 1)


def test_real_traffic_shows_in_the_figures_and_on_the_page(console_bot: Bot, fake_openai: FakeOpenAI) -> None:
    clear_of_midnight()
    sim = console_bot.simulator()
    sim.send_text("user-1", "fast")
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 1.3)
    sim.send_text("user-1", "second attempt")
    fake_openai.set_behavior(first_token_delay=ATTEMPT_TIMEOUT * 3.3)
    assert "继续" in (sim.send_text("user-2", "late").text or "")  # still working (with its page's link)
    wait_for(lambda: first_pages(console_bot) == 3)  # the late answer is ready for its 继续
    fake_openai.set_behavior(first_token_delay=0)
    sim.send_text("user-2", "继续")
    fake_openai.set_behavior(fail_status=400)
    assert sim.send_text("user-3", "fails").text == texts.LLM_FAILED

    found = figures.gather(console_bot.runtime)
    hour = datetime.fromtimestamp(found.generated_at, SHANGHAI).hour
    activity = found.activity
    assert (activity.messages_today, activity.users_today) == (5, 3)
    assert sum(value or 0 for value in activity.hour_messages) == 5
    assert 1 <= (activity.hour_users[hour] or 0) <= 3
    assert all(value is None for value in activity.hour_messages[hour + 1 :])
    assert (activity.day_messages[-1], activity.day_users[-1]) == (5, 3)
    # the failure's notice is a page too, delivered in its first attempt
    assert dict(found.deliveries_today) == {"attempt_1": 2, "attempt_2": 1, "next_message": 1}
    assert dict(found.failures.undelivered_today) == {"late": 1}
    assert dict(found.failures.job_failures_today) == {"failed": 1}
    assert found.latency.first_page_p50[-1] is not None and found.latency.llm_p95[-1] is not None
    assert all(value is None for value in found.latency.llm_p50[:-1])

    client = console_bot.app.test_client()
    login(client, console_bot.app, ADMIN)
    html = page(client)
    for label in ("第1次请求", "第2次请求", "下一条消息", "超出微信等待", "调用失败", "今日消息"):
        assert label in html, label
    assert '<meta http-equiv="refresh" content="30">' in html


def test_events_are_not_counted_as_messages_or_users(quiet_bot: Bot) -> None:
    """The day's figures, its hours and the followers' list count what followers send, not their events
    (a follow, a menu click, an unsubscribe…): those are counted by kind in the `messages` metric only."""
    clear_of_midnight()
    sim = quiet_bot.simulator()
    sim.push(sim.subscribe_xml("fan"))
    sim.push(sim.click_xml("fan", "menu-1"))
    sim.push(sim.view_xml("viewer", "https://example.com"))
    sim.push(sim.location_event_xml("viewer", 31.2, 121.5))
    sim.push(sim.unsubscribe_xml("leaver"))
    sim.push(sim.location_xml("walker", 31.2, 121.5))  # a message: counted
    activity = figures.gather(quiet_bot.runtime).activity
    assert (activity.messages_today, activity.users_today) == (1, 1)
    assert sum(value or 0 for value in activity.hour_messages) == 1
    assert (activity.day_messages[-1], activity.day_users[-1]) == (1, 1)
    assert [openid for openid, _, _ in quiet_bot.runtime.stats.followers()] == ["walker"]
    body = quiet_bot.app.test_client().get("/metrics").get_data(as_text=True)
    for kind in ("event:subscribe", "event:click", "event:unsubscribe", "location"):
        assert f'wxbot_messages_total{{kind="{kind}"}} 1.0' in body, kind


def test_the_page_draws_well_formed_charts_and_shows_no_secret(console_bot: Bot) -> None:
    console_bot.runtime.wechat_state.save_token("TOKEN-never-shown-0123456789", 7200)
    console_bot.runtime.stats.seen("user-1")
    client = console_bot.app.test_client()
    login(client, console_bot.app, ADMIN)
    html = page(client)
    svgs = SVG.findall(html)
    assert len(svgs) >= 10
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.get("role") == "img" and root.find("{http://www.w3.org/2000/svg}title") is not None
    for secret in ("TOKEN-never-shown", SECRET, AES_KEY, "test-key", "test-token"):
        assert secret not in html
    assert "已缓存" in html  # the token's state, not the token
    assert "<script" not in html and ' style="' not in html  # the CSP allows neither
    assert "style-src 'self'" in client.get("/console/").headers["Content-Security-Policy"]


def test_the_overview_needs_a_session(console_bot: Bot) -> None:
    response = console_bot.app.test_client().get("/console/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/welcome")


# --- history in TIMEZONE ---------------------------------------------------------------------------


def test_hours_and_days_follow_the_timezone_across_an_hour_and_a_day(quiet_bot: Bot) -> None:
    clock = Clock(BEFORE_MIDNIGHT)  # 23:30 in Beijing, 15:30 UTC: the UTC day would not change
    on_clock(quiet_bot, clock)
    stats = quiet_bot.runtime.stats
    stats.seen("a")
    stats.seen("a")
    clock.now += 10 * 60  # 23:40
    stats.seen("b")
    clock.now += 30 * 60  # 00:10 on 2026-12-02 in Beijing
    stats.seen("a")
    stats.seen("c")
    clock.now += 60 * 60  # 01:10
    stats.seen("c")

    found = figures.gather(quiet_bot.runtime)
    assert found.day == "20261202" and found.activity.days[-1] == "12-02"
    activity = found.activity
    assert activity.hour_messages[:2] == [2, 1] and activity.hour_users[:2] == [2, 1]
    assert activity.hour_messages[2:] == [None] * 22  # hours still to come are not zeros
    assert (activity.day_messages[-2:], activity.day_users[-2:]) == ([3, 3], [2, 2])
    assert activity.day_messages[:-2] == [0] * 28
    assert stats.hours("20261201")[23] == (3, 2)
    assert (activity.messages_today, activity.users_today) == (3, 2)


def test_the_thirty_days_are_calendar_days_across_a_change_of_daylight_saving(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(with_worker=False, timezone="Europe/Berlin")
    noon = datetime(2026, 3, 30, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()  # DST began 29 March
    days = figures.last_days(bot.runtime, noon)
    assert len(days) == figures.HISTORY_DAYS == len({day for day, _ in days})
    assert days[0][0] == "20260301" and days[-1] == ("20260330", "03-30")


def test_metrics_of_earlier_days_make_the_daily_charts(quiet_bot: Bot) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    on_clock(quiet_bot, clock)
    metrics = quiet_bot.runtime.metrics
    metrics.inc("pages_delivered", path="attempt_1")
    metrics.inc("pages_delivered", path="attempt_1")
    metrics.inc("customer_service_failures", errcode="45015")
    for seconds in (0.2, 0.4, 0.8, 1.5, 20.0):
        metrics.observe("first_page_seconds", seconds)
    metrics.observe("llm_latency_seconds", 2.5, outcome="ok")
    metrics.undelivered("ans-1", "user-1", "late: not ready")
    clock.now += 3 * 86400  # 2026-12-04
    metrics.inc("pages_delivered", path="customer_service")
    metrics.inc("job_failures", reason="timeout")

    found = figures.gather(quiet_bot.runtime)
    series = dict(found.deliveries.series)
    assert list(series) == ["attempt_1", "customer_service", "cs_failed:45015"]
    assert series["attempt_1"][-4:] == [2, 0, 0, 0] and series["customer_service"][-1] == 1
    assert series["cs_failed:45015"][-4] == 1
    assert (
        found.deliveries.renamed({"attempt_1": "第1次请求", "cs_failed": "客服失败"})[2][0]
        == "客服失败 45015"
    )
    assert found.deliveries_today == [("customer_service", 1)]
    latency = found.latency
    assert latency.first_page_p50[-4] == pytest.approx(0.75)  # rank 2.5 of 5, in the bucket 0.5–1
    assert latency.first_page_p95[-4] == pytest.approx(26.25)  # rank 4.75: 3/4 into the bucket 15–30
    assert latency.llm_p50[-4] == pytest.approx(2.5) and latency.llm_p50[-1] is None
    assert found.failures.undelivered_by_day.total("late") == 1
    assert found.failures.job_failures_today == [("timeout", 1)]
    assert found.failures.undelivered_today == []


# --- retention ---------------------------------------------------------------------------------------


def test_every_history_key_expires(quiet_bot: Bot, redis_client: redis.Redis) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    on_clock(quiet_bot, clock)
    quiet_bot.runtime.stats.seen("a")
    quiet_bot.runtime.metrics.inc("pages_delivered", path="attempt_1")
    quiet_bot.runtime.metrics.observe("first_page_seconds", 1.0)
    day = "20261201"
    ttl = redis_client.ttl
    assert keys.HISTORY_TTL - 5 < ttl(keys.day_hours(day)) <= keys.HISTORY_TTL
    assert keys.HISTORY_TTL - 5 < ttl(keys.day_users_estimate(day)) <= keys.HISTORY_TTL
    assert keys.HOURLY_TTL - 5 < ttl(keys.hour_users(day, "23")) <= keys.HOURLY_TTL
    for name in ("pages_delivered", "first_page_seconds"):
        assert keys.HISTORY_TTL - 5 < ttl(keys.day_metric(day, name)) <= keys.HISTORY_TTL
    assert keys.HISTORY_TTL >= 31 * 86400 and keys.HOURLY_TTL >= 24 * 3600
    history = [k for k in redis_client.keys("wxbot:stats:*") if ttl(k) < 0]
    assert history == []


def test_a_repeated_message_does_not_restart_the_hours_expiry(
    quiet_bot: Bot, redis_client: redis.Redis
) -> None:
    """The history's EXPIRE runs only when something is created (a cheaper hot path): the key keeps
    the expiry its first write gave it, which a key written every second would otherwise push back."""
    on_clock(quiet_bot, Clock(BEFORE_MIDNIGHT))
    quiet_bot.runtime.stats.seen("a")
    hour_key = keys.hour_users("20261201", "23")
    redis_client.expire(hour_key, 100)
    quiet_bot.runtime.stats.seen("a")  # the same user in the same hour: nothing new
    assert redis_client.ttl(hour_key) <= 100
    quiet_bot.runtime.stats.seen("b")  # a new user: the expiry is set again
    assert redis_client.ttl(hour_key) > 100


# --- machinery ----------------------------------------------------------------------------------------


def test_the_machinery_as_it_is_now(console_bot: Bot) -> None:
    runtime = console_bot.runtime
    wait_for(lambda: runtime.workers.heartbeats() != [])
    found = figures.machinery(runtime)
    assert found.live_workers >= 1 and found.queue_depth == 0
    assert found.redis is not None and found.redis.used_memory > 0 and found.redis.version
    assert found.token_expires_in is None
    runtime.wechat_state.save_token("secret-token", 7200)
    expires = figures.machinery(runtime).token_expires_in
    assert (
        expires is not None
        and 7200 - keys.TOKEN_EXPIRY_MARGIN - 5 < expires <= 7200 - keys.TOKEN_EXPIRY_MARGIN
    )
    assert (found.backend, found.default_model, found.models) == (
        "openai",
        "gpt-4o-mini",
        ["gpt-4o-mini", "gpt-4o"],
    )
    assert found.reply_mode == "passive" and not found.cs_unauthorized


def test_todays_tool_calls_and_experts_are_shown(quiet_bot: Bot) -> None:
    metrics = quiet_bot.runtime.metrics
    metrics.inc("tool_calls", function="calculator", outcome="ok")
    metrics.inc("tool_calls", function="calculator", outcome="ok")
    metrics.inc("tool_calls", function="solve_equations", outcome="error")
    metrics.inc("answers_by_expert", expert="计算", model="fin-calc", reason="rule")
    found = figures.gather(quiet_bot.runtime)
    assert found.tools_today == [("calculator/ok", 2.0), ("solve_equations/error", 1.0)]
    assert found.experts_today == [("计算/fin-calc", 1.0)]

    client = quiet_bot.app.test_client()
    login(client, quiet_bot.app, ADMIN)
    html = page(client)
    for chart in SVG.findall(html):
        ET.fromstring(chart)
    assert 'id="chart-tools-today"' in html and "calculator/ok" in html and "计算/fin-calc" in html
