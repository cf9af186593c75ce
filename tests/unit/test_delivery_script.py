"""The 5-second logic as scripts in fake time: which attempt carries which reply, decided in milliseconds.

Every scene runs the bot's own webhook, router, PassiveDelivery, answer store, push log and
AnswerJob on the real Redis, with WeChat's real timing: attempt timeout 5 s, reply margin 0.5 s
(so an attempt's reply must be on its way 4.5 s after it arrived), attempts at t=0, 5 and 10.
Time is fake (testing/clock.py): "the answer is ready at 4.3" happens at 4.3, every run, whatever
the machine's load. The end-to-end versions in tests/integration keep the real clock, and
bench/ measures the real speed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from bot import texts
from bot.answering.errors import describe
from bot.llm import LLMError
from bot.media.voice import TranscriptionError
from bot.replies import utf8_len
from bot.store import keys
from testing.scene import Push, Scene
from testing.simulator import parse_xml

LONG = "".join(f"第{i}段：这是一个很长的回答，用来测试分页。\n" for i in range(300))


def late(question: str, text: str) -> str:
    """An answer as it reaches its user on a later message than the question (short questions only)."""
    return texts.LATE_ANSWER_PREFIX.format(question=question) + text


def read_on(scene: Scene, openid: str, first: Push) -> list[str]:
    """The pages of an answer: the first reply, then 继续 while a page says more follows."""
    pages = [first.text or ""]
    while pages[-1].endswith(texts.MORE_HINT):
        pages.append(scene.say(openid, "继续").text or "")
    return pages


def body_of(pages: list[str]) -> str:
    return "".join(page.removesuffix(texts.MORE_HINT) for page in pages)


# --- which attempt carries the answer ---------------------------------------------------------------
def test_an_answer_ready_at_0_3_goes_out_at_0_3_on_attempt_1(scene: Scene) -> None:
    scene.backend.answer("hello", "echo: hello", after=0.3)
    push = scene.say("user-1", "hello")
    assert push.text == "echo: hello"
    assert push.answered_on == 1
    assert push.replied_at == 0.3  # woken by the answer's notice, not by the 0.5 s re-check


def test_an_answer_ready_at_4_3_goes_out_on_attempt_1(scene: Scene) -> None:
    scene.backend.answer("hello", "echo: hello", after=4.3)
    push = scene.say("user-1", "hello")
    assert (push.text, push.answered_on, push.replied_at) == ("echo: hello", 1, 4.3)


def test_an_answer_ready_inside_the_margin_goes_out_on_attempt_2_as_it_arrives(scene: Scene) -> None:
    # at 4.6 attempt 1's reply could reach WeChat after its 5 s: the answer waits for attempt 2
    scene.backend.answer("hello", "echo: hello", after=4.6)
    push = scene.say("user-1", "hello")
    assert (push.text, push.answered_on, push.replied_at) == ("echo: hello", 2, 5.0)


def test_a_not_ready_attempt_stays_open_past_wechats_timeout_so_that_wechat_retries(scene: Scene) -> None:
    scene.backend.answer("hello", "echo: hello", after=7.0)
    push = scene.say("user-1", "hello")
    first = push.attempts[0]
    assert first.verdict == "timeout"
    scene.advance_to(6.0)
    # the connection was answered only after WeChat hung up at 5.0: WeChat never read that `success`
    assert (first.answered, first.body) == (5.5, "success")
    assert first.late


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_an_answer_ready_at_7_goes_out_on_attempt_2(make_scene: Callable[..., Scene], mode: str) -> None:
    scene = make_scene(mode=mode)
    scene.backend.answer("hello", "echo: hello", after=7.0)
    push = scene.say("user-1", "hello")
    assert (push.text, push.answered_on, push.replied_at) == ("echo: hello", 2, 7.0)
    assert [attempt.arrived for attempt in push.attempts] == [0.0, 5.0]


def test_an_answer_ready_at_12_goes_out_on_attempt_3(scene: Scene) -> None:
    scene.backend.answer("hello", "echo: hello", after=12.0)
    push = scene.say("user-1", "hello")
    assert (push.text, push.answered_on, push.replied_at) == ("echo: hello", 3, 12.0)


def test_every_attempt_of_one_message_makes_one_llm_call(scene: Scene) -> None:
    scene.backend.answer("once", "echo: once", after=12.0)
    push = scene.say("user-1", "once")
    assert len(push.attempts) == 3 and push.text == "echo: once"
    assert len(scene.backend.calls) == 1
    assert len(scene.jobs.enqueued) == 1


def test_an_answer_ready_after_the_third_attempt_is_fetched_by_the_next_message(scene: Scene) -> None:
    scene.backend.answer("very slow", "echo: very slow", after=16.0)
    first = scene.say("user-1", "very slow")
    # attempt 3 (t=10) cannot wait past 14.5: the user reads that the answer is on its way
    assert (first.text, first.answered_on, first.replied_at) == (texts.STILL_WORKING, 3, 14.5)
    fetched = scene.say("user-1", "继续", at=30.0)
    assert fetched.text == late("very slow", "echo: very slow")
    assert (fetched.answered_on, fetched.replied_at) == (1, 30.0)
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE
    assert len(scene.backend.calls) == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_a_retry_after_the_reply_reached_wechat_late_gets_the_same_reply(
    make_scene: Callable[..., Scene], processes: int
) -> None:
    scene = make_scene(processes=processes)
    scene.backend.answer("hello", "echo: hello", after=4.4)
    push = scene.say("user-1", "hello", response_delay=0.8)  # each response takes 0.8 s to reach WeChat
    first, second = push.attempts
    assert (first.answered, first.reached, first.verdict) == (4.4, 5.2, "timeout")
    assert (second.arrived, second.answered, second.verdict) == (5.0, 5.0, "reply")
    assert push.text == "echo: hello"
    assert parse_xml(first.body)["Content"] == "echo: hello"  # what WeChat did not wait for
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE  # the page went out once
    assert len(scene.backend.calls) == 1


def test_a_request_that_reaches_the_bot_late_is_still_answered_in_wechats_time(scene: Scene) -> None:
    # within the margin: the POST waits 0.3 s in front of the web tier, the reply takes 0.2 s back;
    # the model, called at 0.3, is done at 4.7
    scene.backend.answer("hello", "echo: hello", after=4.4)
    push = scene.say("user-1", "hello", request_delay=0.3, response_delay=0.2)
    first = push.attempts[0]
    assert (first.answered, first.reached, first.verdict) == (4.7, 4.9, "reply")
    assert push.text == "echo: hello"


def test_an_answer_claimed_after_wechat_gave_up_on_its_last_attempt_is_not_lost(scene: Scene) -> None:
    # every POST waits 0.6 s in front of a busy web tier: attempt 3, sent at 10.0, reaches the bot at
    # 10.6, so the bot waits until 15.1; WeChat hangs up at 15.0. The answer is ready at 15.05
    # (the model was called at 0.6, when attempt 1 reached the bot).
    scene.backend.answer("q", "echo: q", after=14.45)
    push = scene.say("user-1", "q", request_delay=0.6)
    assert push.user_sees_failure  # WeChat got no reply in time...
    scene.advance_to(16.0)
    assert push.attempts[2].answered == 15.05 and push.attempts[2].late  # ...its reply came too late
    fetched = scene.say("user-1", "继续", at=30.0)
    assert fetched.text == late("q", "echo: q")  # not claimed for a WeChat that had hung up: kept


def test_a_retry_that_lands_on_another_web_process_is_woken_by_the_answer(
    make_scene: Callable[..., Scene],
) -> None:
    scene = make_scene(processes=2)
    scene.backend.answer("hello", "echo: hello", after=7.0)
    push = scene.say("user-1", "hello")
    assert [attempt.process for attempt in push.attempts] == [0, 1]
    assert (push.text, push.answered_on, push.replied_at) == ("echo: hello", 2, 7.0)
    assert len(scene.backend.calls) == 1


# --- the next message -------------------------------------------------------------------------------
def test_two_questions_in_quick_succession_each_go_out_on_their_own_push(scene: Scene) -> None:
    scene.backend.answer("first", "echo: first", after=7.0)
    scene.backend.answer("second", "echo: second", after=1.0)
    first = scene.send("user-1", "first", at=0.0)
    second = scene.send("user-1", "second", at=1.0)
    scene.settle()
    # the second push does not take the first answer: it is held for its own push while WeChat retries
    assert (second.text, second.answered_on, second.replied_at) == ("echo: second", 1, 2.0)
    assert (first.text, first.answered_on, first.replied_at) == ("echo: first", 2, 7.0)
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE


def test_a_new_question_while_a_late_answer_waits_gets_the_late_one_first(scene: Scene) -> None:
    scene.backend.answer("question one", "echo: question one", after=16.0)
    scene.backend.answer("question two", "echo: question two", after=1.0)
    assert scene.say("user-1", "question one").text == texts.STILL_WORKING
    second = scene.say("user-1", "question two", at=30.0)
    # the late answer is ready: it goes at once, and the new question is queued, not lost
    assert second.text == late("question one", "echo: question one") + texts.QUEUED_NOTE
    assert second.replied_at == 30.0
    third = scene.say("user-1", "继续", at=40.0)
    assert third.text == late("question two", "echo: question two")
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE
    assert len(scene.backend.calls) == 2


def test_a_ready_answer_does_not_wait_behind_a_slow_late_one(scene: Scene) -> None:
    scene.backend.answer("slow one", "echo: slow one", after=60.0)
    scene.backend.answer("quick one", "echo: quick one", after=1.0)
    assert scene.say("user-1", "slow one").text == texts.STILL_WORKING
    quick = scene.say("user-1", "quick one", at=20.0)
    assert (quick.text, quick.answered_on, quick.replied_at) == ("echo: quick one", 1, 21.0)
    fetched = scene.say("user-1", "继续", at=70.0)
    assert fetched.text == late("slow one", "echo: slow one")
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE


def test_a_fetch_while_the_late_answer_is_still_being_written_waits_for_it(scene: Scene) -> None:
    scene.backend.answer("slow", "echo: slow", after=27.0)
    assert scene.say("user-1", "slow").text == texts.STILL_WORKING
    fetched = scene.say("user-1", "继续", at=20.0)
    assert (fetched.answered_on, fetched.replied_at) == (2, 27.0)
    assert fetched.text == late("slow", "echo: slow")


def test_a_fetch_that_finds_the_late_answer_still_unfinished_says_so_again(scene: Scene) -> None:
    scene.backend.answer("slow", "echo: slow", after=60.0)
    assert scene.say("user-1", "slow").text == texts.STILL_WORKING
    again = scene.say("user-1", "继续", at=20.0)
    assert (again.text, again.answered_on, again.replied_at) == (texts.STILL_WORKING, 3, 34.5)
    assert scene.say("user-1", "继续", at=61.0).text == late("slow", "echo: slow")


def test_a_fetch_with_nothing_owed_says_so_at_once(scene: Scene) -> None:
    push = scene.say("user-1", "继续")
    assert (push.text, push.answered_on, push.replied_at) == (texts.NOTHING_MORE, 1, 0.0)


def test_an_answer_whose_job_was_lost_is_told_as_a_failure_after_ten_minutes(
    make_scene: Callable[..., Scene], redis_client: redis.Redis
) -> None:
    scene = make_scene(auto_jobs=False)  # the job is queued and never runs
    assert scene.say("user-1", "lost").text == texts.STILL_WORKING
    # the answer store reads the wall clock itself, not the scene's: age the answer in Redis instead
    (answer_id,) = scene.jobs.enqueued
    created = float(redis_client.hget(keys.answer(answer_id), "created") or 0)
    redis_client.hset(keys.answer(answer_id), "created", created - 601)
    fetched = scene.say("user-1", "继续", at=30.0)
    assert (fetched.text, fetched.answered_on) == (late("lost", texts.LLM_TIMEOUT), 1)


# --- long and streamed answers ----------------------------------------------------------------------
def test_a_long_answer_is_read_page_by_page_without_loss(scene: Scene) -> None:
    chunks = [LONG[i : i + 50] for i in range(0, len(LONG), 50)]
    scene.backend.stream_pieces("tell me a lot", [(1.0, chunk) for chunk in chunks])
    first = scene.say("user-1", "tell me a lot")
    assert first.answered_on == 1
    pages = read_on(scene, "user-1", first)
    assert len(pages) >= 5
    assert all(utf8_len(page) <= 2048 for page in pages)
    assert not pages[-1].endswith(texts.MORE_HINT)
    assert body_of(pages).replace("\n", "") == LONG.replace("\n", "")
    assert not [push.delivery.violations for push in scene.pushes if push.delivery.violations]
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE


def test_the_page_limit_is_a_setting(make_scene: Callable[..., Scene]) -> None:
    scene = make_scene(wechat_max_reply_bytes=600)
    scene.backend.answer("q", "字" * 1000)
    pages = read_on(scene, "user-1", scene.say("user-1", "q"))
    assert len(pages) > 3
    assert all(utf8_len(page) <= 600 for page in pages)
    assert body_of(pages) == "字" * 1000


def test_the_first_page_goes_out_while_the_model_is_still_writing(scene: Scene) -> None:
    # a piece every second for 36 s: page 1 exists after a few seconds, the answer long after
    chunks = [LONG[i : i + 500] for i in range(0, len(LONG), 500)]
    scene.backend.stream_pieces("stream it", [(1.0 + i, chunk) for i, chunk in enumerate(chunks)])
    first = scene.say("user-1", "stream it")
    (call,) = scene.backend.calls
    assert first.answered_on == 1 and first.replied_at is not None and first.replied_at < 4.5
    assert call.outcome == "streaming"  # still writing when page 1 went out
    assert first.text is not None and first.text.startswith("第0段") and first.text.endswith(texts.MORE_HINT)
    second = scene.say("user-1", "继续")  # page 2 is not written yet: this 继续 waits for it
    assert second.text is not None and second.replied_at is not None
    assert second.replied_at > second.sent and call.outcome == "streaming"
    pages = read_on(scene, "user-1", second)
    assert call.outcome == "done"
    assert body_of([first.text, *pages]).replace("\n", "") == LONG.replace("\n", "")


# --- failures -----------------------------------------------------------------------------------------
def test_an_llm_failure_is_one_plain_sentence_and_the_history_stays_clean(scene: Scene) -> None:
    scene.backend.fail("will fail", LLMError("unavailable", "HTTP 503"), after=1.0)
    push = scene.say("user-1", "will fail")
    assert (push.text, push.answered_on, push.replied_at) == (texts.LLM_FAILED, 1, 1.0)
    assert scene.history("user-1") == []
    assert scene.say("user-1", "works now").text == "echo: works now"
    assert scene.history("user-1") == ["works now", "echo: works now"]


@pytest.mark.parametrize(
    ("error", "told"),
    [
        (LLMError("timeout", "read timeout"), texts.LLM_TIMEOUT),
        (LLMError("failed", "HTTP 400"), texts.LLM_FAILED),
        (None, texts.LLM_EMPTY),  # the model answered only blanks
        # a server's words that say "empty" tell nothing of the answer: the service failed
        (LLMError("unavailable", "FastChat workers for m failed: empty stream"), texts.LLM_FAILED),
        (LLMError("failed", "OpenAI error 400: messages must not be empty"), texts.LLM_FAILED),
    ],
    ids=["timeout", "failed", "empty", "empty-stream", "empty-in-detail"],
)
def test_each_kind_of_llm_failure_has_its_sentence(scene: Scene, error: LLMError | None, told: str) -> None:
    if error is None:
        scene.backend.answer("q", "  ", after=2.0)
    else:
        scene.backend.fail("q", error, after=2.0)
    push = scene.say("user-1", "q")
    assert (push.text, push.replied_at) == (told, 2.0)


def test_a_voice_is_told_unrecognised_only_when_it_said_nothing() -> None:
    """A download error whose server words say "empty" is a failure, not a voice that said nothing."""
    failed = TranscriptionError("cannot download the voice message: 40007 empty media data")
    assert describe(failed).text == texts.VOICE_FAILED
    assert describe(TranscriptionError("empty transcript", empty=True)).text == texts.VOICE_UNRECOGNISED


def test_a_stream_cut_midway_keeps_what_was_written_and_says_so(scene: Scene) -> None:
    pieces = [(0.5, "部分回答" * 10), (0.6, "部分回答" * 10)]
    scene.backend.fail("cut", LLMError("failed", "stream cut"), after=1.0, pieces=pieces)
    push = scene.say("user-1", "cut")
    assert push.text == "部分回答" * 20 + "\n\n" + texts.LLM_CUT_SHORT  # the note ends the text's page
    assert scene.say("user-1", "继续").text == texts.NOTHING_MORE


def test_a_failure_after_wechats_attempts_is_told_by_the_next_message(scene: Scene) -> None:
    scene.backend.fail("q", LLMError("unavailable", "HTTP 503"), after=20.0)
    assert scene.say("user-1", "q").text == texts.STILL_WORKING
    assert scene.say("user-1", "继续", at=30.0).text == late("q", texts.LLM_FAILED)


# --- what reaches the model -------------------------------------------------------------------------------
def test_the_history_and_the_system_prompt_reach_the_model(make_scene: Callable[..., Scene]) -> None:
    scene = make_scene(system_prompt="You are terse.")
    scene.say("user-1", "first")
    scene.say("user-1", "second")
    scene.say("user-2", "other user")
    first, second, other = scene.backend.calls
    assert second.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert len(first.messages) == 2 and len(other.messages) == 2


def test_the_history_is_trimmed_by_turns(make_scene: Callable[..., Scene]) -> None:
    scene = make_scene(history_max_turns=2)
    for index in range(4):
        scene.say("user-1", f"q{index}")
    assert scene.history("user-1") == ["q2", "echo: q2", "q3", "echo: q3"]


# --- many users at once -------------------------------------------------------------------------------------
def expected_attempt(ready: float) -> int | None:
    """WeChat's attempt that carries an answer ready `ready` s after the question (None: too late)."""
    for number in (1, 2, 3):
        arrives = 5.0 * (number - 1)
        if ready <= arrives + 4.5:
            return number
    return None


def test_many_users_at_once_each_get_their_own_answer_on_the_attempt_its_time_decides(scene: Scene) -> None:
    # on both sides of each attempt's 4.5 s and of WeChat's 5 s (an exact tie would be a race)
    times = [0.2, 2.0, 4.4, 4.6, 5.2, 7.0, 9.4, 9.6, 12.0, 14.4, 14.6, 17.0]
    ready = {f"user-{i}": after for i, after in enumerate(times)}
    for openid, after in ready.items():
        scene.backend.answer(f"question of {openid}", f"answer for {openid}", after=after)
    pushes = {openid: scene.send(openid, f"question of {openid}") for openid in ready}
    scene.settle()
    for openid, push in pushes.items():
        attempt = expected_attempt(ready[openid])
        if attempt is None:
            assert (push.text, push.replied_at) == (texts.STILL_WORKING, 14.5), openid
        else:
            assert (push.text, push.answered_on) == (f"answer for {openid}", attempt), openid
            assert push.replied_at == max(ready[openid], 5.0 * (attempt - 1)), openid
    late_users = [openid for openid in ready if expected_attempt(ready[openid]) is None]
    assert late_users  # the script does reach past WeChat's three attempts
    fetches = {openid: scene.send(openid, "继续", at=30.0) for openid in late_users}
    scene.settle()
    for openid, push in fetches.items():
        assert push.text == late(f"question of {openid}", f"answer for {openid}"), openid
    assert len(scene.backend.calls) == len(ready)
