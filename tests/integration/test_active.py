"""Active mode: `success` at once, typing, customer-service sends, quota, refusals and tokens."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from bot import texts
from bot.replies import utf8_len
from bot.store import keys
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import Bot

LONG = "".join(f"第{i}行：客服消息分页测试内容。\n" for i in range(600))


def active_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(wechat_reply_mode="active")


def test_acknowledged_at_once_then_sent_through_customer_service(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = active_bot(make_bot)
    fake_openai.set_behavior(first_token_delay=3.0)
    delivery = bot.simulator().send_text("user-1", "slow one")
    assert delivery.acknowledged and delivery.elapsed < 1.0
    wait_for(lambda: fake_wechat.sent_texts("user-1") == ["echo: slow one"])
    assert fake_wechat.typing_commands("user-1") == ["Typing"]


def test_at_most_the_quota_is_sent_and_the_rest_is_read_with_continue(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = active_bot(make_bot)
    fake_openai.set_behavior(reply=LONG, chunk_size=200)
    bot.simulator().send_text("user-1", "long")
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == 5)
    time.sleep(0.5)
    sent = fake_wechat.sent_texts("user-1")
    assert len(sent) == 5 and all(utf8_len(text) <= 2048 for text in sent)
    assert sent[-1].endswith(texts.MORE_HINT) and not sent[0].endswith(texts.MORE_HINT)
    rest = [bot.simulator().send_text("user-1", "继续").text]
    while rest[-1] is not None and rest[-1].endswith(texts.MORE_HINT):
        rest.append(bot.simulator().send_text("user-1", "继续").text)
    pages = [page.removesuffix(texts.MORE_HINT) for page in sent + [r or "" for r in rest]]
    assert "".join(pages).replace("\n", "") == LONG.replace("\n", "")


def test_unverified_account_falls_back_to_passive_delivery(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    redis_client: redis.Redis,
) -> None:
    bot = active_bot(make_bot)
    fake_wechat.fail_sends(48001)
    sim = bot.simulator()
    assert sim.send_text("user-1", "hello").acknowledged
    wait_for(lambda: redis_client.exists(keys.CS_UNAUTHORIZED) == 1)
    fetched = sim.send_text("user-1", "继续")
    assert fetched.text is not None and fetched.text.endswith("echo: hello")
    # from now on this account is served passively, inside WeChat's window
    assert sim.send_text("user-1", "second").text == "echo: second"


def test_quota_refusal_keeps_the_answer_for_the_next_message(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    redis_client: redis.Redis,
) -> None:
    bot = active_bot(make_bot)
    fake_wechat.fail_sends(45047, times=1)
    sim = bot.simulator()
    assert sim.send_text("user-1", "q1").acknowledged
    wait_for(lambda: len(redis_client.lrange(keys.owed("user-1"), 0, -1)) == 1)
    follow_up = sim.send_text("user-1", "q2")
    assert follow_up.text is not None and "echo: q1" in follow_up.text
    wait_for(lambda: fake_wechat.sent_texts("user-1") == ["echo: q2"])


def test_a_refusal_after_page_one_keeps_the_rest_for_the_next_message(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    redis_client: redis.Redis,
) -> None:
    """WeChat sends page 1, then refuses page 2 (45047): page 1 said nothing of more pages, so the next
    question brings page 2, headed as a late answer, and 继续 the rest — each page once, in order."""
    bot = active_bot(make_bot)
    # the stream holds after 1,000 characters (about 1.5 pages): page 1 goes out, page 2 is not full yet
    fake_openai.set_behavior(reply=LONG, chunk_size=200, hold_after_chunks=6)
    sim = bot.simulator()
    assert sim.send_text("user-1", "long").acknowledged
    fake_openai.wait_holding()
    wait_for(lambda: fake_wechat.sent_texts("user-1"), what="page 1 through customer service")
    (page1,) = fake_wechat.sent_texts("user-1")
    assert not page1.endswith(texts.MORE_HINT)
    fake_wechat.fail_sends(45047, times=1)
    fake_openai.release()
    wait_for(lambda: redis_client.lrange(keys.owed("user-1"), 0, -1), what="the rest owed to the user")
    assert fake_wechat.sent_texts("user-1") == [page1]
    fake_openai.set_behavior(reply="short answer to q2")
    follow = sim.send_text("user-1", "q2")
    late = texts.LATE_ANSWER_PREFIX.format(question="long")
    assert follow.text is not None and follow.text.startswith(late) and follow.text.endswith(texts.MORE_HINT)
    wait_for(lambda: fake_wechat.sent_texts("user-1") == [page1, "short answer to q2"], what="q2's answer")
    rest = [follow.text]
    while rest[-1].endswith(texts.MORE_HINT):
        rest.append(sim.send_text("user-1", "继续").text or "")
    pages = [page.removesuffix(texts.MORE_HINT) for page in [page1, *rest]]
    assert "".join(pages).removeprefix(page1).startswith(late)
    read = "".join(pages).replace(late, "", 1)
    assert read.replace("\n", "") == LONG.replace("\n", "")
    assert sim.send_text("user-1", "继续").text == texts.NOTHING_MORE


def test_expired_token_is_refreshed_once_and_shared(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = active_bot(make_bot)
    other_process = active_bot(make_bot)
    bot.simulator().send_text("user-1", "a")
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == 1)
    assert fake_wechat.token_fetches == 1
    fake_wechat.expire_token(42001)
    other_process.simulator().send_text("user-2", "b")
    wait_for(lambda: len(fake_wechat.sent_texts("user-2")) == 1)
    bot.simulator().send_text("user-3", "c")
    wait_for(lambda: len(fake_wechat.sent_texts("user-3")) == 1)
    assert fake_wechat.token_fetches == 2


def test_a_run_written_again_goes_on_after_the_pages_read_with_continue(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    """Customer service sent its quota, the user read two more pages with 继续, then the worker died: the
    new run keeps every page the user has, not only those customer service sent (it kept 5 of 7, and the
    user's next 继续 landed in the middle of the new text, the 重新生成 note unseen)."""
    first = "".join(f"第{i}句。" for i in range(300))
    second = first[: first.index("第40句")] + "".join(f"第{i}句（重写）。" for i in range(40, 300))
    bot = make_bot(wechat_reply_mode="active", wechat_max_reply_bytes=600)
    fake_openai.set_behavior(reply=first, chunk_size=40, hold_after_chunks=30)  # about 2/3, then it stalls
    sim = bot.simulator()
    assert sim.send_text("user-1", "q").acknowledged
    wait_for(lambda: len(fake_wechat.sent_texts("user-1")) == bot.runtime.settings.wechat_cs_quota)
    read = [sim.send_text("user-1", "继续").text or "" for _ in range(2)]
    target = bot.runtime.answers.current_target("user-1")
    assert target is not None
    answer_id = target.answer.id
    bot.runtime.answers.redis.delete(keys.answer_lease(answer_id))  # killed: its lease ran out
    fake_openai.set_behavior(reply=second, chunk_size=40, hold_after_chunks=None)
    bot.ext["jobs"].enqueue(answer_id)  # Dramatiq redelivers the job
    wait_for(lambda: getattr(bot.runtime.answers.get(answer_id), "status", "") == "done")
    following = sim.send_text("user-1", "继续").text or ""
    assert texts.REGENERATED_NOTE in following  # the new text differs from what was read: it says so
    assert not any(f"{s}。" in following for s in read[-1].split("。") if s.startswith("第"))
    fake_openai.release()
