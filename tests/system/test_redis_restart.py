"""Redis restarted while an answer is being written (an operator's `systemctl restart redis`, a crash
and systemd's restart): the answer is written again once Redis is back and the follower reads it whole,
once — not 「AI 服务暂时出了问题」, not 「回答还在生成中」 for the ten minutes after which a lost job is
given up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import texts
from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import Bot

STREAMED = "".join(f"第{i}句，Redis 重启时正在写的回答。" for i in range(60))


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_an_answer_interrupted_by_a_redis_restart_is_written_again(
    tmp_path: Path, make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    with RedisServer(tmp_path / "redis", port=free_port(), persist=True) as server:
        bot = make_bot(redis_url=server.url)
        fake_openai.set_behavior(reply=STREAMED, chunk_size=10, chunk_delay=0.05)  # about 6 s of writing
        sim = bot.simulator()
        sim.attempts = 1
        sim.send_text("user-1", "写一段长回答")
        wait_until(lambda: len(fake_openai.chat_requests()) == 1, timeout=20)
        time.sleep(1.0)  # mid-stream, its push's state on disk (AOF, fsync every second)
        server.stop()
        time.sleep(2.0)  # Redis away; the run that was writing fails on its next write
        server.start()
        wait_until(lambda: len(fake_openai.chat_requests()) == 2, timeout=60)  # the retried job
        reading: list[str] = []
        for _ in range(20):
            text = bot.simulator().send_text("user-1", "继续").text or ""
            if text in (texts.NOTHING_MORE, ""):
                break
            if text != texts.STILL_WORKING:
                reading.append(text)
            if not text.endswith(texts.MORE_HINT) and text != texts.STILL_WORKING:
                break
            time.sleep(0.2 if text == texts.STILL_WORKING else 0)
        whole = "".join(page.removesuffix(texts.MORE_HINT) for page in reading)
        assert texts.LLM_FAILED not in whole and texts.LLM_CUT_SHORT not in whole
        assert STREAMED in whole.replace("\n", "")
        assert bot.simulator().send_text("user-1", "继续").text == texts.NOTHING_MORE
        assert len(fake_openai.chat_requests()) == 2
