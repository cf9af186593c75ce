"""The notices that wake the replies waiting for an answer (bot/delivery/waiter.py): one when something
becomes deliverable, none when a job merely starts (each notice costs every waiting reply a look)."""

from __future__ import annotations

import redis

from testing.fakes.openai_server import FakeOpenAI
from testing.patience import wait_for
from tests.conftest import Bot


def test_a_one_page_answer_notifies_once_at_its_end(
    bot: Bot, fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe("wxbot:ready:user-1")
    try:
        fake_openai.set_behavior(reply="短的回答。")
        reply = bot.simulator().send_text("user-1", "一个问题")
        assert reply.text == "短的回答。"
        heard = list(iter(lambda: pubsub.get_message(timeout=0.5), None))  # until half a second of quiet
        notices = [message for message in heard if message["type"] == "message"]
        assert len(notices) == 1  # the end (its page and its status together); not the job's start
        wait_for(lambda: redis_client.llen("wxbot:user:user-1:history") == 2, what="the history")
    finally:
        pubsub.close()
