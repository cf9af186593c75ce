"""WeChat hangs up on its last attempt before the answer is ready: the answer is not marked delivered to a
connection nobody reads (bot/delivery/passive.py), it waits for the user's next message instead."""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import redis

from bot import texts
from bot.replies import preview
from testing.fakes.openai_server import FakeOpenAI
from testing.patience import wait_for
from tests.conftest import Bot


def test_an_answer_ready_after_wechat_hung_up_on_its_last_attempt_waits_for_the_next_message(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    # one attempt, and the bot would wait for it for almost 30 s: WeChat (here) gives up long before
    bot = make_bot(wechat_attempts=1, wechat_attempt_timeout=30.0)
    fake_openai.set_behavior(reply="迟到的回答。", hold_after_chunks=1)
    sim = bot.simulator()
    body, encrypted = sim.envelope(sim.text_xml("user-1", "一个慢问题"))
    url = urlsplit(bot.url)
    head = (
        f"POST {url.path}?{urlencode(sim.signed_params('user-1', encrypted))} HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    wechat = socket.create_connection((url.hostname, url.port))
    wechat.sendall(head.encode() + body)
    fake_openai.wait_holding()  # the model is at work on the question
    wechat.close()  # WeChat's timeout: it stops waiting for this, its last attempt
    fake_openai.release()  # the answer is ready now, while the bot still holds the request
    [answer] = map(str, redis_client.lrange("wxbot:user:user-1:owed", 0, -1))
    # the held request gives the answer up (for any later message) instead of claiming it
    wait_for(lambda: redis_client.hget(f"wxbot:ans:{answer}", "reserved_until") == "0", what="the release")
    later = sim.send_text("user-1", "继续")
    assert later.text == texts.LATE_ANSWER_PREFIX.format(question=preview("一个慢问题")) + "迟到的回答。"
