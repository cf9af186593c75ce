"""Reasoning models: their thinking, streamed as <think>…</think> at the start of the content or as
reasoning_content deltas, never reaches the chat; the answer page may show it (SHOW_REASONING); and a
model that thinks for a long time is working, not dead.

The 40-second think runs on a fake clock (testing/clock.py, testing/thinking.py): in milliseconds, the
same way on any machine. The rest goes through the real stack with the loopback fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bot import texts
from bot.answering.generation import AnswerJob
from bot.answering.writing import TYPING_RENEW, TYPING_WINDOW
from bot.llm.base import Piece, Reasoning, text_only
from bot.llm.fastchat_backend import FastChatBackend
from bot.llm.reasoning import ThinkFilter, opened_by_template
from bot.ops.redis_server import RedisServer
from bot.runtime import Runtime
from testing.clock import FakeClock
from testing.fakes.fastchat import FakeController, FakeWorker
from testing.fakes.openai_server import FakeOpenAI
from testing.pages import PUBLIC_BASE, PageReader, token_in
from testing.patience import wait_for
from testing.reading import read_answer
from testing.scene import Scene, scene_settings
from testing.thinking import RecordingSender, ThinkingBackend
from tests.conftest import Bot

THOUGHT = "先想一想：用户问的是生命的意义。\n\n也许答案是 42。"
ANSWER = "**答案**是 42。\n\n- 第一点\n- 第二点\n"
CHAT_ANSWER = "答案是 42。\n\n• 第一点\n• 第二点"
PATIENCE = 30.0


def run(chunks: list[str], opened: bool = False, complete: bool = True) -> list[Any]:
    thoughts = ThinkFilter(opened)
    pieces = [piece for chunk in chunks for piece in thoughts.feed(chunk)]
    return pieces + list(thoughts.finish(complete))


def split(text: str, opened: bool = False, complete: bool = True) -> tuple[str, str]:
    pieces = run([text], opened, complete)
    thinking = "".join(piece.text for piece in pieces if isinstance(piece, Reasoning))
    return thinking, "".join(piece for piece in pieces if isinstance(piece, str))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_think_tags_at_the_start_are_thinking_however_the_stream_is_cut(size: int) -> None:
    text = f"\n <think>{THOUGHT}</think>\n\n{ANSWER}"
    pieces = run([text[i : i + size] for i in range(0, len(text), size)])
    assert "".join(piece.text for piece in pieces if isinstance(piece, Reasoning)) == THOUGHT
    assert "".join(piece for piece in pieces if isinstance(piece, str)) == ANSWER


def test_only_think_tags_at_the_start_count() -> None:
    assert split("答案里提到 <think> 标签</think>。") == ("", "答案里提到 <think> 标签</think>。")
    assert split("<thinking>不是这个标签") == ("", "<thinking>不是这个标签")
    assert split("<think>想到一半就停了") == ("想到一半就停了", "")  # cut at the token limit: no answer
    assert split("<thi") == ("", "<thi")
    assert split("   ") == ("", "")


# --- a thinking the chat template opened (DeepSeek-R1, QwQ without a reasoning parser) ------------------
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_thinking_the_template_opened_ends_at_its_close_tag_however_the_stream_is_cut(size: int) -> None:
    text = f"{THOUGHT}\n</think>\n\n{ANSWER}"  # the prompt ended with "<think>\n": the content has no <think>
    pieces = run([text[i : i + size] for i in range(0, len(text), size)], opened=True)
    assert "".join(piece.text for piece in pieces if isinstance(piece, Reasoning)) == THOUGHT + "\n"
    assert "".join(piece for piece in pieces if isinstance(piece, str)) == ANSWER


def test_a_thinking_the_template_opened_is_held_back_until_it_closes() -> None:
    thoughts = ThinkFilter(opened=True)
    assert list(thoughts.feed("嗯，用户问的是一加一。")) == []  # thinking or answer: not told yet
    assert list(thoughts.feed("</thi")) == []
    assert list(thoughts.feed("nk>\n\n答案")) == [Reasoning("嗯，用户问的是一加一。"), "答案"]
    assert list(thoughts.feed("是 2。")) == ["是 2。"]  # the answer then streams as it comes


def test_content_without_a_close_tag_is_the_answer_and_a_cut_one_the_thinking() -> None:
    assert split("答案是 2。", opened=True) == ("", "答案是 2。")  # the model did not think after all
    assert split("还在想，想到", opened=True, complete=False) == ("还在想，想到", "")  # cut at the limit
    assert split(f"<think>{THOUGHT}</think>{ANSWER}", opened=True) == (THOUGHT, ANSWER)  # its own tag
    assert split("\n\n</think>\n\n答案", opened=True) == ("", "答案")  # an empty thinking


def test_a_reasoning_delta_first_means_the_content_is_the_answer() -> None:
    thoughts = ThinkFilter(opened=True)
    assert list(thoughts.reasoning_seen()) == []
    assert list(thoughts.feed("答案</think>")) == ["答案</think>"]  # at once, as for any model
    held = ThinkFilter(opened=True)
    assert list(held.feed("答")) == []
    assert list(held.reasoning_seen()) == ["答"]  # what was held back goes out first


@pytest.mark.parametrize(
    ("setting", "model", "opened"),
    [
        ("auto", "deepseek-r1", True),
        ("auto", "DeepSeek-R1-Distill-Qwen-7B", True),
        ("auto", "deepseek-r1:14b", True),
        ("auto", "Qwen/QwQ-32B", True),
        ("auto", "Qwen3-30B-A3B-Thinking-2507", True),
        ("auto", "gpt-4o-mini", False),
        ("auto", "qwen2.5-7b-instruct", False),
        ("auto", "r12-chat", False),
        ("auto", "deepseek-chat", False),
        ("yes", "gpt-4o-mini", True),
        ("no", "deepseek-r1", False),
    ],
)
def test_which_models_open_their_thinking_in_the_template(setting: Any, model: str, opened: bool) -> None:
    assert opened_by_template(setting, model) is opened


def test_a_model_that_never_thinks_gets_its_text_at_once() -> None:
    thoughts = ThinkFilter(opened_by_template("auto", "gpt-4o-mini"))
    assert list(thoughts.feed("答案")) == ["答案"]


@pytest.fixture
def page_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE)


def settled_page(bot: Bot, reply: str | None) -> dict[str, Any]:
    token = token_in(reply)
    assert token is not None, reply
    reader = PageReader(bot.url.removesuffix("/wechat"))
    deadline = time.monotonic() + PATIENCE
    while not (state := reader.state(token))["done"]:
        assert time.monotonic() < deadline, "the answer was never finished"
        time.sleep(0.05)
    return state


def with_a_table(answer: str) -> str:
    """An answer with a table gets its page's link even on one page: the tests read the page through it."""
    return answer + "\n| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_think_tags_never_reach_the_chat_or_the_history_and_the_page_shows_them_collapsed(
    page_bot: Bot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(reply=f"<think>{THOUGHT}</think>\n\n{with_a_table(ANSWER)}", chunk_size=3)
    reading = read_answer(page_bot.simulator(), "user-1", "生命的意义？")
    assert (
        reading.text.startswith(CHAT_ANSWER)
        and "先想一想" not in reading.text
        and "think" not in reading.text
    )
    [_, answer] = wait_for(lambda: page_bot.runtime.history.messages("user-1"))
    assert answer == {
        "role": "assistant",
        "content": with_a_table(ANSWER),
    }  # the model's Markdown, no thinking
    page = settled_page(page_bot, reading.pages[0])
    assert "先想一想" in page["reasoning"] and "先想一想" not in page["answer"]
    assert "<strong>答案</strong>" in page["answer"]
    token = token_in(reading.pages[0])
    html = PageReader(page_bot.url.removesuffix("/wechat")).page(str(token)).text
    assert '<details id="reasoning" class="reasoning">' in html  # collapsed: <details> without `open`
    assert texts.PAGE_REASONING in html


def test_reasoning_deltas_never_reach_the_chat(page_bot: Bot, fake_openai: FakeOpenAI) -> None:
    for user, field in (("user-1", "reasoning_content"), ("user-2", "reasoning")):
        behavior = {"reasoning": THOUGHT, "reasoning_field": field, "chunk_size": 4}
        fake_openai.set_behavior(reply=with_a_table(ANSWER), **behavior)
        reading = read_answer(page_bot.simulator(), user, "生命的意义？")
        assert reading.text.startswith(CHAT_ANSWER) and "先想一想" not in reading.text, field
        page = settled_page(page_bot, reading.pages[0])
        assert "先想一想" in page["reasoning"], field


def test_a_template_opened_thinking_never_reaches_the_chat_or_the_history(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """DeepSeek-R1-Distill on vLLM without --reasoning-parser: the stream is `thinking…</think>answer`."""
    bot = make_bot(public_base_url=PUBLIC_BASE, openai_model="deepseek-r1-distill-qwen-7b")
    reply = f"{THOUGHT}\n</think>\n\n{with_a_table(ANSWER)}"
    fake_openai.set_behavior(reply=reply, chunk_size=3)
    reading = read_answer(bot.simulator(), "user-1", "生命的意义？")
    assert reading.text.startswith(CHAT_ANSWER) and "先想一想" not in reading.text
    assert "think" not in reading.text
    [_, answer] = wait_for(lambda: bot.runtime.history.messages("user-1"))
    assert answer == {"role": "assistant", "content": with_a_table(ANSWER)}
    page = settled_page(bot, reading.pages[0])
    assert "先想一想" in page["reasoning"] and "先想一想" not in page["answer"]


def test_show_reasoning_never_keeps_the_thinking_off_the_page_too(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, redis_client: redis.Redis
) -> None:
    bot = make_bot(public_base_url=PUBLIC_BASE, show_reasoning="never")
    fake_openai.set_behavior(reply=with_a_table(ANSWER), reasoning=THOUGHT, chunk_size=4)
    reading = read_answer(bot.simulator(), "user-1", "生命的意义？")
    page = settled_page(bot, reading.pages[0])
    assert page["reasoning"] == "" and "<strong>答案</strong>" in page["answer"]
    [live] = redis_client.keys("wxbot:ans:*:live")
    assert redis_client.hget(live, "reasoning") == ""


def test_the_live_page_says_thinking_while_the_model_thinks(page_bot: Bot, fake_openai: FakeOpenAI) -> None:
    thought = "让我仔细想想这个问题。"
    thinking_events = len(range(0, len(thought), 4))
    # the role chunk and the thinking go out; the answer waits until the test releases it
    fake_openai.set_behavior(
        reply=ANSWER, reasoning=thought, chunk_size=4, hold_after_chunks=1 + thinking_events
    )
    sim = page_bot.simulator()
    delivery = sim.send_text("user-1", "难题")
    token = token_in(delivery.text)
    assert token is not None and delivery.text is not None and delivery.text.startswith("回答还在生成中")
    reader = PageReader(page_bot.url.removesuffix("/wechat"))
    deadline = time.monotonic() + PATIENCE
    while thought not in (state := reader.state(token))["reasoning"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["state"] == "thinking" and state["status"] == texts.PAGE_THINKING and state["answer"] == ""
    assert texts.PAGE_THINKING in reader.page(token).text
    fake_openai.release()
    assert (
        sim.send_text("user-1", "继续").text == texts.LATE_ANSWER_PREFIX.format(question="难题") + CHAT_ANSWER
    )


def test_a_think_longer_than_the_job_lease_keeps_its_run(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """The lease (1 s here) is kept by its timer while the model thinks (3 s of reasoning deltas): a
    run that lost it could write nothing, so the whole answer arriving is the proof."""
    bot = make_bot(job_lease_seconds=1.0)
    fake_openai.set_behavior(
        reply="想好了：42。", reasoning="嗯" * 12, chunk_size=1, reasoning_chunk_delay=0.25
    )
    reading = read_answer(bot.simulator(), "user-1", "想久一点")
    assert reading.text == "想好了：42。"
    assert len(fake_openai.chat_requests()) == 1


# --- a 40-second think, on a fake clock ----------------------------------------------------------------
FORTY_SECONDS: list[tuple[float, Any]] = [
    *[(float(second), Reasoning(f"第{second}秒，还在想。")) for second in range(1, 41)],
    (41.0, "想好了，"),
    (41.5, "答案是 **42**。"),
]


@pytest.fixture
def scene(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[Scene]:
    made = Scene(scene_settings(redis_server.url))
    yield made
    made.close()


def test_a_model_thinking_for_40_seconds_is_waited_for_and_its_answer_fetched(scene: Scene) -> None:
    backend = ThinkingBackend(scene.clock, FORTY_SECONDS)
    scene.worker.__dict__["backend"] = backend  # the job worker's runtime asks this model
    push = scene.say("user-1", "深度思考")
    assert push.text == texts.STILL_WORKING  # WeChat's 15 s are over; the answer waits, as any late one
    scene.advance_to(45.0)
    later = scene.say("user-1", "继续")
    assert later.text == texts.LATE_ANSWER_PREFIX.format(question="深度思考") + "想好了，答案是 42。"
    assert len(backend.calls) == 1  # one run, never given up or restarted while it thought
    assert scene.history("user-1") == ["深度思考", "想好了，答案是 **42**。"]


def test_while_a_model_thinks_the_typing_indicator_is_renewed_and_the_first_page_clock_waits(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    settings = scene_settings(
        redis_server.url,
        wechat_reply_mode="active",
        wechat_secret="secret",
        wechat_api_base="http://127.0.0.1:9",
    )
    clock = FakeClock()
    runtime = Runtime(settings, redis.Redis.from_url(redis_server.url, decode_responses=True))
    try:
        runtime.__dict__["backend"] = ThinkingBackend(clock, FORTY_SECONDS)
        sender = RecordingSender(clock)
        runtime.__dict__["sender"] = sender
        answer_id = runtime.answers.create(
            "user-1", "深度思考", owner="push", reserved_for=0, delivery="active"
        )
        job = AnswerJob(runtime)
        job.clock = clock.monotonic
        task = clock.spawn(lambda: job.run(answer_id))
        clock.run_until(lambda: task.done)
        assert task.result == "done"
        # shown as the run starts, renewed before WeChat's 15 s run out, while WeChat still takes it
        assert sender.typing_at == [0.0, TYPING_RENEW, 2 * TYPING_RENEW]
        assert 3 * TYPING_RENEW >= TYPING_WINDOW
        # the thinking is measured on its own; the first page's clock does not count it
        assert runtime.metrics.average("reasoning_seconds") == 41.0
        first_page = runtime.metrics.average("first_page_seconds")
        assert first_page is not None and first_page < 5.0
    finally:
        clock.close()
        runtime.close()


# --- FastChat ------------------------------------------------------------------------------------------
def fastchat_pieces(reply: str, **settings: Any) -> list[Piece]:
    """What FastChatBackend streams when its one worker writes `reply` (3 characters a chunk)."""
    with FakeController() as controller:
        worker = FakeWorker(reply=reply, chunk_size=3).start()
        try:
            controller.register(worker)
            backend = FastChatBackend(
                scene_settings(
                    "redis://127.0.0.1:6379/0",
                    llm_backend="fastchat",
                    fastchat_controller_url=controller.url,
                    **settings,
                )
            )
            try:
                return list(backend.stream([{"role": "user", "content": "hi"}]))
            finally:
                backend.close()
        finally:
            worker.stop()


def test_fastchat_workers_think_tags_are_thinking_too() -> None:
    pieces = fastchat_pieces(f"<think>{THOUGHT}</think>\n{ANSWER}")
    assert "".join(text_only(pieces)) == ANSWER
    assert "".join(piece.text for piece in pieces if isinstance(piece, Reasoning)) == THOUGHT


def test_fastchat_workers_thinking_opened_by_the_template_is_thinking_too() -> None:
    """THINK_OPENED_BY_TEMPLATE=yes: a worker whose model's name does not say so (a fine-tuned R1)."""
    pieces = fastchat_pieces(f"{THOUGHT}</think>\n{ANSWER}", think_opened_by_template="yes")
    assert "".join(text_only(pieces)) == ANSWER
    assert "".join(piece.text for piece in pieces if isinstance(piece, Reasoning)) == THOUGHT
