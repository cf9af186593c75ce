"""What one follower can make the bot spend, through the chat: the models /model offers, the daily
image quota, and commands under the rate limit."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from tests.conftest import Bot

ADMIN = "admin-1"
#: 2026-12-01 10:00:00 UTC, the start of a minute: the rate limit counts in it, whatever the real time
NOON = 1796119200.0


def say(bot: Bot, openid: str, text: str) -> str:
    reply = bot.simulator().send_text(openid, text).text
    assert reply is not None, f"no text reply to {text!r}"
    return reply


def listed_models(listing: str) -> list[str]:
    """The models of a /model reply (between its first and last line)."""
    return listing.splitlines()[1:-1]


def test_model_offers_only_the_allowed_models_and_a_stale_choice_is_not_used(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    strict = make_bot()  # ALLOWED_MODELS unset: only the configured model
    assert listed_models(say(strict, "user-1", "/model")) == ["gpt-4o-mini"]  # the API key lists more
    assert say(strict, "user-1", "/model gpt-4o") == texts.MODEL_UNKNOWN.format(model="gpt-4o")

    wide = make_bot(with_worker=False, allowed_models=["gpt-4o", "o1-pro"])  # o1-pro: not served
    assert listed_models(say(wide, "user-1", "/model")) == ["gpt-4o-mini", "gpt-4o"]
    assert say(wide, "user-1", "/model o1-pro") == texts.MODEL_UNKNOWN.format(model="o1-pro")
    assert say(wide, "user-1", "/model gpt-4o") == texts.MODEL_SWITCHED.format(model="gpt-4o")

    # the strict deployment (ALLOWED_MODELS narrowed since) answers with its default model
    assert say(strict, "user-1", "hi") == "echo: hi"
    assert [request["model"] for request in fake_openai.chat_requests()] == ["gpt-4o-mini"]


def test_images_have_a_daily_quota_of_their_own(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(user_daily_images=1)
    bot.runtime.limits.clock = lambda: NOON
    first = bot.simulator().send_text("user-1", "/image a cat")
    assert first.reply is not None and first.reply["MsgType"] == "image"
    assert say(bot, "user-1", "/image a dog") == texts.IMAGE_QUOTA_REACHED.format(quota=1)
    assert len(fake_openai.requests_to("/v1/images/generations")) == 1
    assert say(bot, "user-1", "still a question") == "echo: still a question"


def test_commands_count_against_the_rate_limit(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(user_rate_per_minute=2, wechat_admin_openids=[ADMIN])
    bot.runtime.limits.clock = lambda: NOON
    assert "user-1" in say(bot, "user-1", "/whoami")
    assert say(bot, "user-1", "/nonsense") == texts.UNKNOWN_COMMAND
    assert say(bot, "user-1", "/help") == texts.RATE_LIMITED
    assert say(bot, "user-1", "/stats") == texts.RATE_LIMITED  # an admin command still looks unknown
    assert say(bot, "user-1", "hello") == texts.RATE_LIMITED
    for _ in range(3):  # admins are exempt
        assert ADMIN in say(bot, ADMIN, "/whoami")


def test_the_rate_counted_on_arrival_refuses_the_11th_message_and_only_checked_ones_count(
    make_bot: Callable[..., Bot],
) -> None:
    """The arrival script counts a chat message against the rate (no round trip of its own): the 11th
    command in a minute is refused; 继续, an empty message and an admin's are taken back off the count."""
    bot = make_bot(user_rate_per_minute=10, wechat_admin_openids=[ADMIN])
    bot.runtime.limits.clock = lambda: NOON
    for word in ("继续", "继续", "继续"):  # fetches: no check, not counted
        bot.simulator().send_text("user-1", word)
    for n in range(10):
        assert texts.HELP_HEADER in say(bot, "user-1", "/help"), n
    assert say(bot, "user-1", "/help") == texts.RATE_LIMITED
    assert say(bot, "user-2", "/help") != texts.RATE_LIMITED  # another follower's own count
    for _ in range(12):
        assert ADMIN in say(bot, ADMIN, "/whoami")
    assert bot.runtime.limits.admit(ADMIN, daily_quota=None) == "ok"  # the admin's 12 were taken back


def test_the_consoles_rate_override_applies_on_arrival(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(user_rate_per_minute=10)
    bot.runtime.limits.clock = lambda: NOON
    bot.runtime.overrides.set("rate_per_minute", "2")
    assert say(bot, "user-1", "/help") != texts.RATE_LIMITED
    assert say(bot, "user-1", "/help") != texts.RATE_LIMITED
    assert say(bot, "user-1", "/help") == texts.RATE_LIMITED


def test_a_banned_follower_gets_the_ban_for_commands_too(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(wechat_admin_openids=[ADMIN])
    say(bot, ADMIN, "/ban user-9")
    for command in ("/help", "/model", "/minutes", "/image a cat", "/nonsense"):
        assert say(bot, "user-9", command) == texts.BANNED, command
    assert not bot.runtime.minutes.recording("user-9")
    say(bot, ADMIN, f"/ban {ADMIN}")  # even banned, an admin can still administer
    assert say(bot, ADMIN, f"/unban {ADMIN}") == texts.UNBANNED_DONE.format(openid=ADMIN)


def test_a_banned_followers_continue_gets_the_ban_not_a_page(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """继续 was routed to the next page without the ban's check: a banned follower still read the pages
    of their answers. Its ban sentence counts against neither the rate nor the quota, as 继续 does not."""
    bot = make_bot(wechat_admin_openids=[ADMIN], user_rate_per_minute=2, wechat_max_reply_bytes=600)
    bot.runtime.limits.clock = lambda: NOON
    fake_openai.set_behavior(reply="".join(f"第{i}句。" for i in range(300)))
    first = say(bot, "user-9", "a long answer, please")  # the rate's first message
    assert first.startswith("第0句。")
    say(bot, ADMIN, "/ban user-9")
    for _ in range(3):
        assert say(bot, "user-9", "继续") == texts.BANNED
    say(bot, ADMIN, "/unban user-9")
    second = say(bot, "user-9", "继续")  # the page the banned follower was refused: none was used up
    last_read = int(re.findall(r"第(\d+)句", first)[-1])
    assert second.startswith(f"第{last_read + 1}句。"), second
    assert texts.HELP_HEADER in say(bot, "user-9", "/help")  # the rate's second message, not the fifth


def test_a_model_picked_after_a_question_applies_to_the_next_one_not_to_it(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """/model sent while a question still waits for a worker changed the model of that question too: the
    job read the user's choice when it started. The choice is recorded with the question when it is asked."""
    from bot.answering.generation import AnswerJob

    bot = make_bot(with_worker=False, allowed_models=["gpt-4o"])
    runtime, default = bot.runtime, bot.runtime.settings.openai_model

    def ask(question: str) -> str:
        return str(runtime.answers.create("user-1", question, owner="", reserved_for=0, delivery="active"))

    first = ask("第一个问题")
    assert say(bot, "user-1", "/model gpt-4o") == texts.MODEL_SWITCHED.format(model="gpt-4o")
    second = ask("第二个问题")
    job = AnswerJob(runtime)
    job.run(first)
    job.run(second)
    models = [request["model"] for request in fake_openai.chat_requests()]
    assert models == [default, "gpt-4o"]
    assert say(bot, "user-1", f"/model {default}") == texts.MODEL_SWITCHED.format(model=default)
    assert runtime.models.of_question("user-1", None) == default  # an answer from before: the choice now
