"""Long, streamed and failed answers as the user reads them."""

from __future__ import annotations

from collections.abc import Callable

from bot import texts
from bot.replies import utf8_len
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import ATTEMPT_TIMEOUT, Bot

LONG = "".join(f"第{i}段：这是一个很长的回答，用来测试分页。\n" for i in range(300))


def read_all_pages(bot: Bot, openid: str, first: str) -> list[str]:
    sim = bot.simulator()
    pages = [first]
    while pages[-1].endswith(texts.MORE_HINT):
        reply = sim.send_text(openid, "继续").text
        assert reply is not None
        pages.append(reply)
    return pages


def test_long_answer_is_read_page_by_page_without_loss(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply=LONG, chunk_size=50)
    first = bot.simulator().send_text("user-1", "tell me a lot")
    assert first.text is not None
    pages = read_all_pages(bot, "user-1", first.text)
    assert len(pages) >= 5
    assert all(utf8_len(page) <= 2048 for page in pages)
    body = "".join(page.removesuffix(texts.MORE_HINT) for page in pages)
    assert body.replace("\n", "") == LONG.replace("\n", "")
    assert bot.simulator().send_text("user-1", "继续").text == texts.NOTHING_MORE


def test_page_limit_is_a_setting(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI) -> None:
    bot = make_bot(wechat_max_reply_bytes=600)
    fake_openai.set_behavior(reply="字" * 1000)
    first = bot.simulator().send_text("user-1", "q")
    assert first.text is not None
    pages = read_all_pages(bot, "user-1", first.text)
    assert all(utf8_len(page) <= 600 for page in pages)
    assert "".join(page.removesuffix(texts.MORE_HINT) for page in pages) == "字" * 1000


def test_first_page_goes_out_before_the_answer_is_finished(bot: Bot, fake_openai: FakeOpenAI) -> None:
    # ~18 KB streamed over ~3 attempt timeouts: page 1 exists long before the end
    chunks = len(LONG) // 40
    fake_openai.set_behavior(reply=LONG, chunk_size=40, chunk_delay=ATTEMPT_TIMEOUT * 3 / chunks)
    delivery = bot.simulator().send_text("user-1", "stream it")
    assert len(delivery.attempts) == 1
    assert delivery.text is not None and delivery.text.startswith("第0段")
    assert delivery.text.endswith(texts.MORE_HINT)


def test_llm_failure_is_one_plain_sentence_and_history_stays_clean(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(fail_status=500)
    delivery = bot.simulator().send_text("user-1", "will fail")
    assert delivery.text == texts.LLM_FAILED
    assert bot.runtime.history.messages("user-1") == []
    fake_openai.set_behavior(fail_status=None)
    assert bot.simulator().send_text("user-1", "works now").text == "echo: works now"
    history = bot.runtime.history.messages("user-1")
    assert [m["content"] for m in history] == ["works now", "echo: works now"]


def test_stream_cut_midway_keeps_what_was_written_and_says_so(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="部分回答" * 20, chunk_size=8, fail_after_chunks=3)
    delivery = bot.simulator().send_text("user-1", "cut")
    assert delivery.text is not None
    if delivery.text != texts.LLM_FAILED:  # the SDK may report the cut before any text arrived
        assert delivery.text.startswith("部分回答") and delivery.text.endswith(texts.MORE_HINT)
        assert bot.simulator().send_text("user-1", "继续").text == texts.LLM_FAILED


def test_history_and_system_prompt_reach_the_model(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot(system_prompt="You are terse.")
    sim = bot.simulator()
    sim.send_text("user-1", "first")
    sim.send_text("user-1", "second")
    sim.send_text("user-2", "other user")
    messages = fake_openai.chat_requests()[1]["messages"]
    assert messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert len(fake_openai.chat_requests()[2]["messages"]) == 2


def test_history_is_trimmed_by_turns(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI) -> None:
    bot = make_bot(history_max_turns=2)
    sim = bot.simulator()
    for index in range(4):
        sim.send_text("user-1", f"q{index}")
    assert [m["content"] for m in bot.runtime.history.messages("user-1")] == [
        "q2",
        "echo: q2",
        "q3",
        "echo: q3",
    ]
