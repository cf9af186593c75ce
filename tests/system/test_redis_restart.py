"""Redis restarted while an answer is being written (an operator's `systemctl restart redis`, a crash
and systemd's restart): the answer is written again once Redis is back and the follower reads it whole,
once — not 「AI 服务暂时出了问题」, not 「回答还在生成中」 for the ten minutes after which a lost job is
given up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot import texts
from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer
from testing.fakes.openai_server import FakeOpenAI
from testing.patience import wait_for
from testing.reading import read_answer
from tests.conftest import Bot

STREAMED = "".join(f"第{i}句，Redis 重启时正在写的回答。" for i in range(60))


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with its AOF on, restartable on the same port. Requested before
    `make_bot`, it stops after the bot and its job worker (whose acks would wait for it forever)."""
    with RedisServer(tmp_path / "redis", port=free_port(), persist=True) as server:
        yield server


@pytest.mark.slow
def test_an_answer_interrupted_by_a_redis_restart_is_written_again(
    persistent_redis: RedisServer, make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    # one attempt per push (WeChat's side and ours): the question's own push ends during the outage,
    # and its answer is then the user's next message's, without waiting out three attempts
    bot = make_bot(redis_url=persistent_redis.url, wechat_attempts=1)
    fake_openai.set_behavior(reply=STREAMED, chunk_size=10, chunk_delay=0.05)  # about 6 s of writing
    sim = bot.simulator()
    sim.attempts = 1
    push = threading.Thread(target=sim.send_text, args=("user-1", "写一段长回答"))
    push.start()
    try:
        wait_for(lambda: len(fake_openai.chat_requests()) == 1, what="the first LLM call")
        time.sleep(1.0)  # mid-stream, the question's records on disk (AOF, fsync every second)
        persistent_redis.stop()
        time.sleep(2.0)  # Redis away: the run that was writing fails at its next write
        persistent_redis.start()
    finally:
        push.join(timeout=60)
    wait_for(lambda: len(fake_openai.chat_requests()) == 2, what="the retried job")
    reading = read_answer(bot.simulator(), "user-1", "继续")  # the question's push got no answer
    assert reading.late and reading.problems == []
    assert texts.LLM_FAILED not in reading.text and texts.LLM_CUT_SHORT not in reading.text
    assert reading.text.replace("\n", "") == STREAMED  # every page, once
    assert reading.after == texts.NOTHING_MORE
    assert len(fake_openai.chat_requests()) == 2
