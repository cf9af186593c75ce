"""Active delivery (customer-service messages) in fake time: when WeChat refuses a send part-way
through an answer, the rest reaches the user on their next messages, in order, each page once.

The bot's own webhook, router, AnswerJob, ActiveSender and answer store run on the real Redis;
WeChat's customer-service API is testing.scene.CustomerService, which refuses the sends it is told to.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot import texts
from bot.replies import utf8_len
from bot.store import keys
from testing.scene import Push, Scene

LONG = "".join(f"第{i}行：客服消息分页测试内容，用来测试回答被拒后剩下的页。\n" for i in range(300))
USER = "user-1"


def active(make_scene: Callable[..., Scene]) -> Scene:
    return make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")


def late(question: str, text: str) -> str:
    return texts.LATE_ANSWER_PREFIX.format(question=question) + text


def read_on(scene: Scene, first: Push) -> list[str]:
    """The first reply, then 继续 while a page says more follows."""
    pages = [first.text or ""]
    while pages[-1].endswith(texts.MORE_HINT):
        pages.append(scene.say(USER, "继续").text or "")
    return pages


def joined(pages: list[str]) -> str:
    """The answer's text as read: no heading, no hints, no line breaks (pages are cut at them)."""
    text = "".join(page.removesuffix(texts.MORE_HINT) for page in pages)
    return text.replace(late("long", ""), "", 1).replace("\n", "")


def ask_long(scene: Scene) -> Push:
    scene.backend.answer("long", LONG, after=1.0)
    asked = scene.say(USER, "long")
    assert asked.delivery.acknowledged and asked.text is None  # `success`: the pages go out as 客服 messages
    scene.advance_to(5.0)
    return asked


@pytest.mark.parametrize("refused", [2, 3, 5], ids=["after-page-1", "middle-page", "quota-th-page"])
def test_a_refused_page_and_the_rest_come_with_the_next_question(
    make_scene: Callable[..., Scene], refused: int
) -> None:
    scene = active(make_scene)
    scene.cs.refuse(USER, refused, errcode=45047)
    ask_long(scene)
    sent = scene.cs.texts(USER)
    assert len(sent) == refused - 1
    assert not any(page.endswith(texts.MORE_HINT) for page in sent)  # nobody told them more follows
    scene.backend.answer("q2", "echo: q2", after=1.0)
    follow = scene.say(USER, "q2", at=20.0)
    # the next message carries the refused page, headed as a late answer, saying more follows
    assert follow.text is not None and follow.text.startswith(late("long", f"第{_first_line(follow)}行"))
    assert follow.text.endswith(texts.MORE_HINT)
    scene.advance_to(25.0)
    assert scene.cs.texts(USER) == [*sent, "echo: q2"]  # the new question still has its own answer
    # the answer's own 客服 messages have stopped: the rest is read with 继续, after q2's answer came
    rest = read_on(scene, follow)
    assert joined(sent + rest) == LONG.replace("\n", "")  # every page once, in order
    assert all(not page.startswith(late("long", "")) for page in rest[1:])  # the heading once
    assert all(utf8_len(page) <= scene.settings.wechat_max_reply_bytes for page in rest)
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE
    assert len(scene.backend.calls) == 2


def _first_line(push: Push) -> str:
    assert push.text is not None
    body = push.text.removeprefix(late("long", ""))
    return body[1 : body.index("行")]


def test_three_network_failures_after_page_one_keep_the_rest_the_same_way(
    make_scene: Callable[..., Scene],
) -> None:
    scene = active(make_scene)
    scene.cs.refuse(USER, 2, 3, 4, errcode=None)  # page 2 fails three times
    ask_long(scene)
    (page1,) = scene.cs.texts(USER)
    follow = scene.say(USER, "q2", at=20.0)
    assert follow.text is not None and follow.text.startswith(late("long", ""))
    rest = read_on(scene, follow)
    assert joined([page1, *rest]) == LONG.replace("\n", "")
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE


def test_continue_sent_before_any_other_question_reads_the_rest(make_scene: Callable[..., Scene]) -> None:
    scene = active(make_scene)
    scene.cs.refuse(USER, 2)
    ask_long(scene)
    (page1,) = scene.cs.texts(USER)
    fetched = scene.say(USER, "继续", at=20.0)
    # it continues the answer just read: the page comes as any 继续's page does, without the heading
    assert fetched.text is not None and fetched.text.startswith("第")
    assert fetched.text.endswith(texts.MORE_HINT)
    rest = read_on(scene, fetched)
    assert joined([page1, *rest]) == LONG.replace("\n", "")
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE
    # nothing is left owed: a new question gets only its own answer, through customer service
    scene.backend.answer("q2", "echo: q2", after=1.0)
    assert scene.say(USER, "q2").text is None
    scene.advance_to(scene.now + 5.0)
    assert scene.cs.texts(USER) == [page1, "echo: q2"]


def test_two_messages_at_once_take_different_pages(make_scene: Callable[..., Scene]) -> None:
    """The rest is claimed page by page: two messages that arrive together never get the same page."""
    scene = active(make_scene)
    scene.cs.refuse(USER, 2)
    ask_long(scene)
    (page1,) = scene.cs.texts(USER)
    scene.backend.answer("q2", "echo: q2", after=1.0)
    one = scene.send(USER, "q2", at=20.0)
    two = scene.send(USER, "继续", at=20.0)
    scene.settle()
    assert one.text is not None and two.text is not None and one.text != two.text
    first, second = sorted([one, two], key=lambda push: push.replied_at or 0.0)
    rest = read_on(scene, second)
    assert joined([page1, first.text or "", *rest]) == LONG.replace("\n", "")
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE


def test_a_refusal_while_the_answer_is_still_being_written_keeps_what_comes_after(
    make_scene: Callable[..., Scene],
) -> None:
    scene = active(make_scene)
    chunks = [LONG[i : i + 400] for i in range(0, len(LONG), 400)]
    scene.backend.stream_pieces("long", [(1.0 + i, chunk) for i, chunk in enumerate(chunks)])
    scene.cs.refuse(USER, 2)
    assert scene.say(USER, "long").text is None
    scene.run_until(lambda: scene.cs.received.get(USER, 0) == 2)  # page 2 refused mid-stream
    (page1,) = scene.cs.texts(USER)
    (call,) = scene.backend.calls
    assert call.outcome == "streaming"
    follow = scene.say(USER, "q2")
    assert follow.text is not None and follow.text.startswith(late("long", ""))
    rest = read_on(scene, follow)  # 继续 waits for pages not written yet
    assert call.outcome == "done"
    assert joined([page1, *rest]) == LONG.replace("\n", "")
    assert scene.cs.texts(USER)[0] == page1 and scene.cs.texts(USER).count(page1) == 1


def test_a_run_written_again_after_a_refusal_keeps_the_pages_the_user_got(
    make_scene: Callable[..., Scene],
) -> None:
    """The worker dies after the next message took the refused page from the owed list, and the new run
    words the answer differently: it keeps the pages the user has (the owed list's page, not only those
    customer service sent), and the next page says that the answer was written again."""
    scene = active(make_scene)
    scene.backend.hang("long", [(1.0, LONG[: len(LONG) // 2])])  # several pages, then it stalls
    scene.cs.refuse(USER, 2)
    assert scene.say(USER, "long").text is None
    scene.run_until(lambda: scene.cs.received.get(USER, 0) == 2)
    (page1,) = scene.cs.texts(USER)
    answer_id = scene.jobs.enqueued[0]
    scene.backend.answer("q2", "echo: q2", after=1.0)
    follow = scene.say(USER, "q2")  # page 2, late
    assert follow.text is not None and follow.text.startswith(late("long", ""))
    scene.advance_to(scene.now + 5.0)
    assert scene.cs.texts(USER) == [page1, "echo: q2"]  # q2's answer is the one being read now
    scene.runtime.answers.redis.delete(keys.answer_lease(answer_id))  # killed: its lease ran out
    reworded = LONG.replace("测试内容", "重写内容")
    scene.backend.answer("long", reworded, after=1.0)  # the redelivered job
    scene.run_job(answer_id)
    scene.advance_to(scene.now + 5.0)
    rest = read_on(scene, follow)
    assert rest[1].startswith(texts.REGENERATED_NOTE.strip())
    assert joined(rest[1:]).removeprefix(texts.REGENERATED_NOTE.strip()) == reworded.replace("\n", "")


def lines_of(pages: list[str]) -> dict[int, int]:
    """The lines of LONG not read exactly once, with how often they were read."""
    read = "".join(pages)
    return {i: read.count(f"第{i}行：") for i in range(300) if read.count(f"第{i}行：") != 1}


def test_continue_read_ahead_during_a_failing_send_is_not_delivered_again(
    make_scene: Callable[..., Scene],
) -> None:
    """Page 2 fails on the network (3 tries, 0.5 s + 1 s apart); meanwhile the user sends 继续, which
    reads page 3 (pages being sent are not for 继续). The refusal then owes page 2: it comes, and page 3
    must not come a second time."""
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")
    scene.cs.refuse(USER, 2, 3, 4, errcode=None)
    scene.backend.answer("long", LONG, after=1.0)
    assert scene.say(USER, "long").text is None
    ahead = scene.say(USER, "继续", at=1.2)  # page 2 is between its tries
    scene.advance_to(10.0)
    pages = [*scene.cs.texts(USER), ahead.text or ""]
    for _ in range(40):
        got = scene.say(USER, "继续").text or ""
        if got == texts.NOTHING_MORE:
            break
        pages.append(got)
    assert lines_of(pages) == {}


OTHER = "".join(f"第{i}段：第二个问题的长回答，客服发送超过配额的部分。\n" for i in range(400))


def test_last_page_of_an_owed_answer_says_more_follows_when_the_active_answer_being_read_has_more(
    make_scene: Callable[..., Scene],
) -> None:
    """long's page 2 is refused; q2 (itself longer than the customer-service quota) is sent meanwhile and
    becomes the answer being read. 继续 reads long's rest first; its last page must say that more follows
    (q2's pages past the quota, which the next 继续 does bring)."""
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")
    scene.cs.refuse(USER, 2)
    scene.backend.answer("long", LONG, after=1.0)
    assert scene.say(USER, "long").text is None
    scene.advance_to(5.0)
    scene.backend.answer("q2", OTHER, after=1.0)
    follow = scene.say(USER, "q2", at=20.0)
    assert follow.text is not None and follow.text.startswith(late("long", ""))
    scene.advance_to(30.0)
    cs = scene.cs.texts(USER)
    assert cs[-1].endswith(texts.MORE_HINT) and "段" in cs[-1]  # q2's quota-th page says more follows
    pages = [follow.text]
    while "第299行" not in pages[-1] and pages[-1].endswith(texts.MORE_HINT):
        pages.append(scene.say(USER, "继续").text or "")
    last_long = pages[-1]
    assert "第299行" in last_long  # long read to its end
    assert last_long.endswith(texts.MORE_HINT), "long's last page did not say that q2's rest follows"
    after = scene.say(USER, "继续").text or ""
    assert "段" in after  # q2 does have more: its pages past the quota
