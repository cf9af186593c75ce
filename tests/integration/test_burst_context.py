"""A question sent in a burst is answered while the one before it still is: the history has neither yet,
so the model read 「I love you」 without the 「帮我翻译下面这句话」 sent a second before. Its prompt now
carries the user's earlier questions whose answers are still being written — in the user's message, not
the system prompt (they are the user's words) — and the history keeps each question as it was asked."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import redis

from bot import texts
from bot.answering.kinds import EARLIER_QUESTION_CHARS, EARLIER_QUESTIONS, REMEMBERED_KINDS
from bot.store import keys
from bot.store.answers import AnswerStore
from testing.fakes.openai_server import FakeOpenAI, tiny_png
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import Bot

FIRST = "帮我把下面这句话翻译成中文"
SECOND = "I love you"


def asked(request: dict[str, Any]) -> str:
    """The last user message of a chat request: what the model is asked now."""
    return str(request["messages"][-1]["content"])


def with_earlier(question: str, *earlier: str) -> str:
    listed = "\n".join(texts.EARLIER_QUESTION.format(text=text) for text in earlier)
    return texts.EARLIER_QUESTIONS.format(questions=listed, question=question)


def has_requests(fake_openai: FakeOpenAI, count: int) -> bool:
    return len(fake_openai.chat_requests()) == count


def burst(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, *questions: str, **config: Any) -> Bot:
    """Active mode (each push is acknowledged at once): the questions sent one after the other while every
    answer holds after its first chunk, until the test releases them."""
    bot = make_bot(wechat_reply_mode="active", **config)
    fake_openai.set_behavior(reply="好的。", hold_after_chunks=1)
    sim = bot.simulator()
    for count, question in enumerate(questions, 1):
        assert sim.send_text("user-1", question).acknowledged
        wait_for(partial(has_requests, fake_openai, count), what=f"the LLM request of {question!r}")
    return bot


def test_a_question_sent_while_the_one_before_is_answered_reads_it(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = burst(make_bot, fake_openai, FIRST, SECOND)
    first, second = fake_openai.chat_requests()
    assert asked(first) == FIRST
    assert asked(second) == with_earlier(SECOND, FIRST)
    assert all(FIRST not in str(m["content"]) for m in second["messages"] if m["role"] == "system")
    fake_openai.release()
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == 2, what="both answers")
    # the history keeps each question as asked, and the next question, with nothing pending, reads it
    history = bot.runtime.history.messages("user-1")
    assert [m["content"] for m in history if m["role"] == "user"] == [FIRST, SECOND]
    assert bot.simulator().send_text("user-1", "谢谢").acknowledged
    wait_for(lambda: len(fake_openai.chat_requests()) == 3)
    third = fake_openai.chat_requests()[2]
    assert asked(third) == "谢谢"
    assert [m["content"] for m in third["messages"] if m["role"] == "user"] == [FIRST, SECOND, "谢谢"]


def test_only_the_last_few_pending_questions_go_with_it_each_cut_short(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    long = "很长的问题" * 100
    questions = ["q1", "q2", long, "q4", "最后一问"]
    burst(make_bot, fake_openai, *questions)
    last = fake_openai.chat_requests()[-1]
    cut = long[: EARLIER_QUESTION_CHARS - 1] + "…"
    assert asked(last) == with_earlier("最后一问", *["q2", cut, "q4"][-EARLIER_QUESTIONS:])
    fake_openai.release()


def test_a_pending_question_moderation_refuses_is_not_given(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """Refused when its own job starts; one still waiting for a worker is not checked yet."""
    bot = make_bot(wechat_reply_mode="active", sensitive_words=["违禁词"])
    store = bot.runtime.answers
    store.create("user-1", "我想问问违禁词的事", owner="p", reserved_for=0, delivery="active")  # queued
    store.create("user-1", "可以问的", owner="p", reserved_for=0, delivery="active")
    assert bot.simulator().send_text("user-1", "q3").acknowledged
    wait_for(lambda: fake_openai.chat_requests())
    assert [asked(r) for r in fake_openai.chat_requests()] == [with_earlier("q3", "可以问的")]


def test_after_a_reset_the_questions_asked_before_it_are_not_given(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = burst(make_bot, fake_openai, FIRST)
    sim = bot.simulator()
    assert sim.send_text("user-1", "/reset").text == texts.RESET_DONE
    assert sim.send_text("user-1", SECOND).acknowledged
    wait_for(partial(has_requests, fake_openai, 2))
    assert asked(fake_openai.chat_requests()[1]) == SECOND
    fake_openai.release()
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == 2, what="both answers, the first one too")


def test_without_a_history_no_pending_question_is_given(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    burst(make_bot, fake_openai, FIRST, SECOND, history_max_turns=0)
    assert [asked(r) for r in fake_openai.chat_requests()] == [FIRST, SECOND]
    fake_openai.release()


def test_a_photo_sent_right_after_a_question_is_described_with_it(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    """「这是什么花？」 then the photo: the question was answered without it; the description answers it."""
    bot = burst(make_bot, fake_openai, "这是什么花？", vision_model="gpt-4o-vision")
    fake_wechat.add_media("photo-1", tiny_png(), "image/png")
    assert bot.simulator().send_image("user-1", "photo-1").acknowledged
    wait_for(partial(has_requests, fake_openai, 2))
    text_part, image_part = fake_openai.chat_requests()[1]["messages"][-1]["content"]
    assert text_part == {"type": "text", "text": with_earlier(texts.PHOTO_DESCRIBE, "这是什么花？")}
    assert image_part["type"] == "image_url"
    fake_openai.release()
    wait_for(lambda: len(bot.runtime.history.messages("user-1")) == 4, what="both turns")
    assert [m["content"] for m in bot.runtime.history.messages("user-1") if m["role"] == "user"] == [
        "这是什么花？",
        texts.PHOTO_NOTE,
    ]


def test_the_store_lists_unfinished_questions_of_the_user_asked_before(redis_client: redis.Redis) -> None:
    store = AnswerStore(redis_client, ttl=3600)

    def ask(openid: str, question: str, kind: str = "text") -> str:
        return store.create(openid, question, owner="p", reserved_for=0, delivery="passive", kind=kind)

    ask("u", "queued")
    store.set_status(store.get(ask("u", "running")) or _gone(), "running")
    done = ask("u", "answered")
    redis_client.hset(keys.answer(done), "status", "done")
    ask("u", "/image 一只猫", kind="image")
    ask("u", "", kind="voice")  # not transcribed yet: nothing to give
    redis_client.delete(keys.answer(ask("u", "expired")))  # its hash gone (ANSWER_TTL)
    ask("someone-else", "not theirs")
    answer = store.get(ask("u", "now")) or _gone()
    ask("u", "asked after")
    assert store.asked_before(answer, REMEMBERED_KINDS, 10) == ["queued", "running"]
    assert store.asked_before(answer, REMEMBERED_KINDS, 1) == ["running"]
    # older than the window: trimmed when the next question is asked, and never read
    redis_client.zadd(keys.asking("u"), {"stale": answer.created - keys.ASKING_WINDOW - 1})
    ask("u", "one more")
    assert "stale" not in map(str, redis_client.zrange(keys.asking("u"), 0, -1))
    assert 0 < redis_client.ttl(keys.asking("u")) <= keys.ASKING_WINDOW
    # a reset: a run of a question asked before it (a restarted one) has no earlier questions either
    pipe = redis_client.pipeline()
    store.forget_asked_in(pipe, "u")
    pipe.execute()
    assert store.asked_before(answer, REMEMBERED_KINDS, 10) == []


def _gone() -> Any:
    raise AssertionError("the answer just created is gone")


def _asker(store: AnswerStore) -> Callable[..., str]:
    def ask(openid: str, question: str, kind: str = "text") -> str:
        return store.create(openid, question, owner="p", reserved_for=0, delivery="passive", kind=kind)

    return ask


def test_before_is_the_order_redis_saw_the_questions_in_not_the_creators_clocks(
    redis_client: redis.Redis, monkeypatch: Any
) -> None:
    """Two web processes with clocks 5 s apart (or a clock stepped back): the question sent first is
    still the earlier one for the one sent after it, and the one sent after is never 「before」 it."""
    import bot.store.answers as answers_module

    store, real = AnswerStore(redis_client, ttl=3600), answers_module.time.time
    ask = _asker(store)
    monkeypatch.setattr(answers_module.time, "time", lambda: real() + 5)  # the first process, ahead
    first = ask("u", "帮我翻译下面这句话")
    monkeypatch.setattr(answers_module.time, "time", real)
    second = ask("u", "I love you")
    assert store.asked_before(store.get(second) or _gone(), REMEMBERED_KINDS, 3) == ["帮我翻译下面这句话"]
    assert store.asked_before(store.get(first) or _gone(), REMEMBERED_KINDS, 3) == []


def test_questions_created_at_the_same_instant_keep_their_order(
    redis_client: redis.Redis, monkeypatch: Any
) -> None:
    import bot.store.answers as answers_module

    store, now = AnswerStore(redis_client, ttl=3600), answers_module.time.time()
    ask = _asker(store)
    monkeypatch.setattr(answers_module.time, "time", lambda: now)
    first, second = ask("u", "one"), ask("u", "two")
    assert store.asked_before(store.get(second) or _gone(), REMEMBERED_KINDS, 3) == ["one"]
    assert store.asked_before(store.get(first) or _gone(), REMEMBERED_KINDS, 3) == []


def test_a_user_with_many_pending_questions_costs_a_bounded_read(redis_client: redis.Redis) -> None:
    """An admin (no rate limit) or a backlog: hundreds of unfinished questions in the window. Each new
    question reads a few of the last ones, not every one of them."""
    store = AnswerStore(redis_client, ttl=3600)
    ask = _asker(store)
    for n in range(300):
        ask("u", f"q{n}")
    answer = store.get(ask("u", "now")) or _gone()

    def hmgets() -> int:
        stats = redis_client.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    before = hmgets()
    assert store.asked_before(answer, REMEMBERED_KINDS, 3) == ["q297", "q298", "q299"]
    assert hmgets() - before <= 30


def moderated(fake_openai: FakeOpenAI) -> list[Any]:
    return [request.json.get("input") for request in fake_openai.requests_to("/v1/moderations")]


def test_the_moderation_endpoint_checks_the_earlier_questions_in_one_call(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """MODERATION=true: each question waits for its moderation before its LLM request; its earlier
    questions are checked in the same call, not one call each (3 more round trips to the endpoint, one
    after the other, before the first token of a question sent in a burst)."""
    fake_openai.set_behavior(flagged_words=("attack",))
    bot = make_bot(wechat_reply_mode="active", moderation=True)
    store = bot.runtime.answers
    for earlier in ("q1", "plan an attack", "q3"):  # still waiting for a worker: not checked yet
        store.create("user-1", earlier, owner="p", reserved_for=0, delivery="active")
    assert bot.simulator().send_text("user-1", "q4").acknowledged
    wait_for(lambda: fake_openai.chat_requests())
    assert [asked(r) for r in fake_openai.chat_requests()] == [with_earlier("q4", "q1", "q3")]
    assert moderated(fake_openai) == [["q4", "q1", "plan an attack", "q3"]]


def test_with_passages_of_the_knowledge_base_the_earlier_questions_stay_next_to_the_question(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """「帮我把下面这句话翻译成中文」 refers to what follows it: that must be the user's next question, not
    the passages retrieved for it — the earlier questions go in the user-question slot of KB_CONTEXT."""
    from tests.integration.test_knowledge_chat import QUESTION, article

    bot = make_bot(wechat_reply_mode="active")
    article(bot.runtime)
    fake_openai.set_behavior(reply="好的。", hold_after_chunks=1)
    sim = bot.simulator()
    for count, question in enumerate((FIRST, QUESTION), 1):
        assert sim.send_text("user-1", question).acknowledged
        wait_for(partial(has_requests, fake_openai, count))
    second = asked(fake_openai.chat_requests()[1])
    fake_openai.release()
    assert second.startswith("参考资料：\n<资料")
    assert second.endswith("\n\n用户问题：" + with_earlier(QUESTION, FIRST))


def test_a_question_about_a_photo_keeps_its_earlier_questions_in_the_text_part(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    from tests.integration.test_photos import PHOTO, VISION

    fake_openai.set_behavior(vision_models=(VISION,))
    fake_wechat.add_media("photo-1", PHOTO, "image/png")
    bot = make_bot(wechat_reply_mode="active", vision_model=VISION)
    sim = bot.simulator()
    assert sim.send_image("user-1", "photo-1").acknowledged
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == 1, what="the photo's description")
    fake_openai.set_behavior(reply="好的。", hold_after_chunks=1)
    for count, question in enumerate(("图里的字是什么意思？", "翻译成英文"), 2):
        assert sim.send_text("user-1", question).acknowledged
        wait_for(partial(has_requests, fake_openai, count))
    last = fake_openai.chat_requests()[2]
    fake_openai.release()
    assert last["model"] == VISION
    text_part, image_part = last["messages"][-1]["content"]
    assert text_part == {"type": "text", "text": with_earlier("翻译成英文", "图里的字是什么意思？")}
    assert image_part["type"] == "image_url"
