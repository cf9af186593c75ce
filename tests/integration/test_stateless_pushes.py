"""Pushes planned before their arrival (Router.ready): only stateless ones, planning reads and writes
nothing, and such a push is counted, rate-limited and de-duplicated as any other."""

from __future__ import annotations

from collections.abc import Callable

import redis
from wechatpy import parse_message

from bot import texts
from bot.store.pushes import Plan, Planned
from handlers.router import Router
from tests.conftest import Bot

ADMIN = "admin-1"


def planned(bot: Bot, xml: str) -> Planned | None:
    router: Router = bot.ext["webhook"].planner
    return router.ready(parse_message(xml), "id:1")


def test_only_stateless_pushes_are_planned_before_their_arrival(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(with_worker=False, wechat_admin_openids=[ADMIN])
    sim = bot.simulator()
    help_plan = planned(bot, sim.text_xml("user-1", "/help"))
    assert help_plan is not None and texts.HELP_HEADER in help_plan.plan.text
    assert help_plan.if_refused == Plan("reply", texts.RATE_LIMITED)
    assert planned(bot, sim.text_xml("user-1", "/stats")) == Planned(
        Plan("reply", texts.UNKNOWN_COMMAND), Plan("reply", texts.RATE_LIMITED)
    )  # an admin command looks unknown to others, ahead of the arrival too
    whoami = planned(bot, sim.text_xml(ADMIN, "/whoami"))
    assert whoami is not None and ADMIN in whoami.plan.text and whoami.if_refused is None  # exempt
    assert planned(bot, sim.text_xml("user-1", "继续")) == Planned(Plan("fetch"))
    assert planned(bot, sim.event_xml("user-1", "CLICK", "menu")) == Planned(Plan("reply", texts.UNSUPPORTED))
    assert planned(bot, sim.event_xml("user-1", "unsubscribe")) == Planned(Plan("silent"))
    for xml in (
        sim.text_xml("user-1", "a question"),
        sim.text_xml("user-1", "/reset"),  # changes the history
        sim.text_xml(ADMIN, "/stats"),  # reads the statistics
        sim.voice_xml("user-1", "media-1", recognition="hello"),  # a meeting's state is in Redis
        sim.event_xml("user-1", "subscribe"),  # the console's welcome text is in Redis
    ):
        assert planned(bot, xml) is None, xml


def test_planning_ahead_writes_nothing(make_bot: Callable[..., Bot], redis_client: redis.Redis) -> None:
    bot = make_bot(with_worker=False)
    sim = bot.simulator()
    before = sorted(redis_client.keys("*"))
    for xml in (
        sim.text_xml("user-1", "/help"),
        sim.text_xml("user-1", "/reset"),
        sim.text_xml("user-1", "hi"),
    ):
        planned(bot, xml)
    assert sorted(redis_client.keys("*")) == before


def test_a_planned_push_is_counted_once_and_its_retry_gets_the_same_reply(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(with_worker=False)
    sim = bot.simulator()
    xml = sim.text_xml("user-1", "/help")
    first = sim.post_raw(xml.encode(), {"openid": "user-1"})
    again = sim.post_raw(xml.encode(), {"openid": "user-1"})  # WeChat's retry: same MsgId, signed again
    assert first.status_code == again.status_code == 200
    assert texts.HELP_HEADER in first.text and first.text == again.text
    assert (bot.runtime.stats.users_today(), bot.runtime.stats.messages_today()) == (1, 1)
    body = bot.app.test_client().get("/metrics").get_data(as_text=True)
    assert 'wxbot_messages_total{kind="text"} 1.0' in body
    assert "wxbot_duplicates_total 1.0" in body
