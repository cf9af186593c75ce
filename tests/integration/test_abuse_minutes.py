"""/minutes through the chat: every piece goes through the same ban/rate/quota check as a question, and
a late piece of a restarted meeting changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from tests.conftest import Bot
from tests.integration.test_voice import tone_amr

ADMIN = "admin-1"
#: 2026-12-01 10:00:00 UTC: the limits count in this minute and day, whatever the real time
NOON = 1796119200.0
MEDIA_DOWNLOAD = "/cgi-bin/media/get"


def say(bot: Bot, openid: str, text: str) -> str:
    reply = bot.simulator().send_text(openid, text).text
    assert reply is not None, f"no text reply to {text!r}"
    return reply


def voice(bot: Bot, openid: str, media_id: str) -> str:
    reply = bot.simulator().send_voice(openid, media_id).text
    assert reply is not None
    return reply


def test_a_banned_follower_in_minutes_mode_gets_no_work_done(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(wechat_admin_openids=[ADMIN])
    fake_wechat.add_media("m1", tone_amr())
    assert say(bot, "user-9", "/minutes") == texts.MINUTES_STARTED
    say(bot, ADMIN, "/ban user-9")
    assert voice(bot, "user-9", "m1") == texts.BANNED
    assert say(bot, "user-9", "a text piece") == texts.BANNED
    assert say(bot, "user-9", "/minutes end") == texts.BANNED
    assert fake_wechat.requests_to(MEDIA_DOWNLOAD) == []
    assert fake_openai.transcriptions == [] and fake_openai.chat_requests() == []


def test_meeting_pieces_count_against_the_rate_limit(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(user_rate_per_minute=3)
    bot.runtime.limits.clock = lambda: NOON
    assert say(bot, "user-1", "/minutes") == texts.MINUTES_STARTED
    assert say(bot, "user-1", "one") == texts.MINUTES_PIECE.format(n=1)
    assert say(bot, "user-1", "two") == texts.MINUTES_PIECE.format(n=2)
    assert say(bot, "user-1", "three") == texts.RATE_LIMITED


def test_voice_pieces_count_as_questions_and_a_refused_end_keeps_the_meeting(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(user_daily_quota=1, wechat_admin_openids=[ADMIN])
    bot.runtime.limits.clock = lambda: NOON
    fake_wechat.add_media("m1", tone_amr())
    fake_wechat.add_media("m2", tone_amr())
    fake_openai.set_behavior(transcript="第一段语音")
    assert say(bot, "user-1", "/minutes") == texts.MINUTES_STARTED
    assert voice(bot, "user-1", "m1") == texts.MINUTES_PIECE.format(n=1)  # the day's one question
    assert voice(bot, "user-1", "m2") == texts.QUOTA_REACHED.format(quota=1)
    assert say(bot, "user-1", "文字不需要转写") == texts.MINUTES_PIECE.format(n=2)  # rate only
    assert say(bot, "user-1", "/minutes end") == texts.QUOTA_REACHED.format(quota=1)
    assert bot.runtime.minutes.recording("user-1")  # kept for a later /minutes end

    say(bot, ADMIN, "/quota 2")
    fake_openai.set_behavior(reply="纪要")
    assert say(bot, "user-1", "/minutes end") == "纪要"
    prompt = fake_openai.chat_requests()[-1]["messages"][1]["content"]
    assert "1. 第一段语音" in prompt and "2. 文字不需要转写" in prompt
    # the minutes waited for m1's transcript; m2 was refused before any download
    assert len(fake_wechat.requests_to(MEDIA_DOWNLOAD)) == 1 and len(fake_openai.transcriptions) == 1


def test_a_late_piece_of_a_restarted_meeting_changes_nothing(
    bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old meeting's voice piece is transcribed only after the user started a new meeting: it must
    neither overwrite the new meeting's first piece nor miscount what the new meeting waits for."""
    jobs = bot.ext["jobs"]
    held: list[tuple[Any, ...]] = []
    monkeypatch.setattr(jobs, "enqueue_minutes_piece", lambda *args: held.append(args))
    fake_wechat.add_media("m1", tone_amr())
    fake_openai.set_behavior(transcript="旧会议的语音")
    assert say(bot, "user-1", "/minutes") == texts.MINUTES_STARTED
    assert voice(bot, "user-1", "m1") == texts.MINUTES_PIECE.format(n=1)
    assert say(bot, "user-1", "/minutes") == texts.MINUTES_STARTED  # restarted
    assert say(bot, "user-1", "新会议第一段") == texts.MINUTES_PIECE.format(n=1)

    [late] = held
    jobs._record_minutes_piece(*late)  # the old piece's job runs now, late
    assert fake_openai.transcriptions == []  # a stale piece is not even transcribed

    fake_openai.set_behavior(reply="新会议纪要")
    assert say(bot, "user-1", "/minutes end") == "新会议纪要"
    prompt = fake_openai.chat_requests()[-1]["messages"][1]["content"]
    assert "1. 新会议第一段" in prompt and "旧会议" not in prompt


def test_minutes_cut_at_the_token_limit_keep_the_recording_and_cancel_ends_it(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """A model whose token limit cuts the minutes every time (make run's first-run local model) kept the
    follower in recording mode: every question became a piece, until the meeting expired hours later.
    /minutes cancel ends the recording and drops it; the next question is a question again."""
    bot = make_bot(user_rate_per_minute=60)
    assert say(bot, "user-1", "/minutes") == texts.MINUTES_STARTED
    assert say(bot, "user-1", "今天讨论预算") == texts.MINUTES_PIECE.format(n=1)
    fake_openai.set_behavior(reply="要点：预算", finish_reason="length")
    cut = say(bot, "user-1", "/minutes end")
    assert cut.startswith("要点：预算") and cut.endswith(texts.MINUTES_KEPT)
    assert "/minutes cancel" in texts.MINUTES_KEPT
    assert say(bot, "user-1", "一个问题") == texts.MINUTES_PIECE.format(n=2)  # still recording

    assert say(bot, "user-1", "/minutes cancel") == texts.MINUTES_CANCELLED
    assert not bot.runtime.minutes.recording("user-1")
    fake_openai.set_behavior(reply="回答", finish_reason="stop")
    assert say(bot, "user-1", "一个问题") == "回答"
    assert say(bot, "user-1", "/minutes 取消") == texts.MINUTES_NOT_STARTED  # nothing left to cancel
    assert say(bot, "user-1", "/minutes end") == texts.MINUTES_NOT_STARTED  # its pieces are gone
