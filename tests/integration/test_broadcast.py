"""/broadcast reaches each follower at most once, goes on after its job is redelivered or continued,
and always reports to the admin — once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot import texts
from bot.answering import chores
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import Bot

ADMIN = "admin-1"
AUDIENCE = [f"user-{index}" for index in range(6)]


@pytest.fixture
def active(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(with_worker=False, wechat_reply_mode="active")


def received(fake: FakeWeChatAPI, text: str) -> list[str]:
    return [message["touser"] for message in fake.sent_messages() if message["text"]["content"] == text]


def test_a_broadcast_continued_in_batches_reaches_everyone_once(
    active: Bot, fake_wechat: FakeWeChatAPI
) -> None:
    runtime = active.runtime
    broadcast_id = runtime.broadcasts.create(ADMIN, "通知", AUDIENCE)
    continued: list[float] = []
    ticks = iter(range(0, 10_000, 100))  # every send "takes" 100 s: one send per batch
    outcome = chores.broadcast(runtime, broadcast_id, continued.append, clock=lambda: float(next(ticks)))
    assert outcome == "continued" and len(received(fake_wechat, "通知")) == 1
    while outcome == "continued":
        outcome = chores.broadcast(runtime, broadcast_id, continued.append, clock=lambda: float(next(ticks)))
    assert outcome == "reported"
    assert sorted(received(fake_wechat, "通知")) == AUDIENCE
    report = texts.BROADCAST_REPORT.format(sent=6, failed=0)
    assert fake_wechat.sent_texts(ADMIN) == [report]
    assert chores.broadcast(runtime, broadcast_id, continued.append) == "gone"  # a late redelivery
    assert fake_wechat.sent_texts(ADMIN) == [report]


def test_two_runs_at_once_never_send_twice(active: Bot, fake_wechat: FakeWeChatAPI) -> None:
    """Dramatiq may deliver the job again while the first run still works (its worker looked dead)."""
    runtime = active.runtime
    broadcast_id = runtime.broadcasts.create(ADMIN, "同时", AUDIENCE * 5)
    outcomes: list[str] = []
    runs = [
        threading.Thread(
            target=lambda: outcomes.append(chores.broadcast(runtime, broadcast_id, lambda d: None))
        )
        for _ in range(3)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert sorted(received(fake_wechat, "同时")) == sorted(AUDIENCE * 5)  # each place once
    assert outcomes.count("reported") == 1
    assert len(fake_wechat.sent_texts(ADMIN)) == 1


def test_a_run_that_died_mid_send_is_reported_as_unknown_not_resent(
    active: Bot, fake_wechat: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = active.runtime
    broadcast_id = runtime.broadcasts.create(ADMIN, "中断", AUDIENCE)
    assert runtime.broadcasts.claim_next(broadcast_id, len(AUDIENCE)) == "user-0"  # then the worker died
    retries: list[float] = []
    assert chores.broadcast(runtime, broadcast_id, retries.append) == "waiting"  # the claim is recent
    assert retries == [chores.REPORT_RETRY_SECONDS]
    monkeypatch.setattr(chores, "CLAIM_STALE_SECONDS", 0.0)
    assert chores.broadcast(runtime, broadcast_id, retries.append) == "reported"
    assert sorted(received(fake_wechat, "中断")) == AUDIENCE[1:]  # user-0 is not sent to twice
    report = texts.BROADCAST_REPORT.format(sent=5, failed=0) + texts.BROADCAST_UNKNOWN.format(unknown=1)
    assert fake_wechat.sent_texts(ADMIN) == [report]
    assert runtime.broadcasts.last_report() == report


def test_failures_are_counted_and_an_empty_audience_still_reports(
    active: Bot, fake_wechat: FakeWeChatAPI
) -> None:
    runtime = active.runtime
    fake_wechat.fail_sends(45015, times=2)
    broadcast_id = runtime.broadcasts.create(ADMIN, "x", AUDIENCE[:3])
    assert chores.broadcast(runtime, broadcast_id, lambda d: None) == "reported"
    empty = runtime.broadcasts.create(ADMIN, "y", [])
    assert chores.broadcast(runtime, empty, lambda d: None) == "reported"
    assert fake_wechat.sent_texts(ADMIN) == [
        texts.BROADCAST_REPORT.format(sent=1, failed=2),
        texts.BROADCAST_REPORT.format(sent=0, failed=0),
    ]


def test_only_what_followers_send_puts_them_in_the_audience_and_unsubscribing_or_a_ban_takes_them_out(
    make_bot: Callable[..., Bot], fake_wechat: FakeWeChatAPI
) -> None:
    """Every push, events too, put its sender in the 48-hour window: a follower who unsubscribed, or only
    opened a menu, was broadcast to and failed with 45015, and was counted in the audience. Only a message
    the user sends opens that window (a click, a follow or a scan: 3 messages within 1 minute only)."""
    bot = make_bot(wechat_admin_openids=[ADMIN], wechat_reply_mode="active")
    sim = bot.simulator()
    sim.send_text("writer", "/whoami")
    sim.push(sim.location_xml("walker", 31.2, 121.5))
    sim.push(sim.link_xml("linker", "title", "description", "https://example.com/a"))
    sim.push(sim.video_xml("filmer", "media-1", short=True))
    sim.push(sim.subscribe_xml("newcomer"))
    sim.push(sim.scan_xml("scanner", "poster"))
    sim.push(sim.click_xml("clicker", "menu-1"))
    sim.push(sim.view_xml("viewer", "https://example.com/b"))
    sim.push(sim.location_event_xml("reporter", 31.2, 121.5))
    sim.send_text("leaver", "/whoami")
    sim.push(sim.unsubscribe_xml("leaver"))
    sim.send_text("troll", "/whoami")
    assert sim.send_text(ADMIN, "/ban troll").text == texts.BANNED_DONE.format(openid="troll")
    audience = sorted([ADMIN, "filmer", "linker", "walker", "writer"])  # not the banned troll
    assert sim.send_text(ADMIN, "/broadcast 通知").text == texts.BROADCAST_QUEUED.format(count=len(audience))
    report = texts.BROADCAST_REPORT.format(sent=len(audience), failed=0)
    wait_for(lambda: fake_wechat.sent_texts(ADMIN)[-1:] == [report], what="the broadcast's report")
    assert sorted(received(fake_wechat, "通知")) == audience
