"""Active mode in fake time: pages a 继续 read while customer service was still trying an earlier page of
the same answer are not sent again by customer service, even when another answer became the one being
read meanwhile (its cursor, in the current hash, then no longer says what was read of the first)."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot import texts
from testing.scene import Push, Scene

USER = "user-1"
MARK = re.compile(r"q(\d+)行(\d+)号")
LONG = "".join(f"q1行{i}号：客服消息分页测试内容，用来测试继续先读的页。\n" for i in range(60))


def lines_of(texts_: list[str], q: int) -> list[int]:
    return [int(line) for text in texts_ for qq, line in MARK.findall(text) if int(qq) == q]


def assert_each_line_once(scene: Scene, read_ahead: Push) -> None:
    """Once the jobs are done, 继续 until nothing more: every line of both answers came exactly once
    (the page that the 继续 `read_ahead` read came after customer service's first page)."""
    scene.settle()
    scene.run_until(scene.jobs_done)
    assert read_ahead.text is not None
    received = [*scene.cs.texts(USER)[:1], read_ahead.text, *scene.cs.texts(USER)[1:]]
    for _ in range(40):
        got = scene.say(USER, "继续", at=scene.now + 1.0).text or ""
        if got == texts.NOTHING_MORE:
            break
        received.append(got)
    read = lines_of(received, 1)
    doubled = sorted({line for line in read if read.count(line) > 1})
    assert doubled == [], f"lines of the long answer received twice: {doubled[:10]}"
    assert sorted(read) == list(range(60))
    assert lines_of(received, 2) == [0]


def test_a_page_read_with_continue_during_a_retry_is_not_sent_again_after_another_answer(
    make_scene: Callable[..., Scene],
) -> None:
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret", wechat_max_reply_bytes=600)
    scene.backend.answer("long", LONG, after=1.0)
    scene.backend.answer("short", "q2行0号：短回答。", after=0.9)  # asked at 0.5: ready at 1.4
    scene.cs.refuse(USER, 2, errcode=None)  # page 1 of the long answer: a network failure, retried at 1.5
    scene.send(USER, "long", at=0.0)
    scene.send(USER, "short", at=0.5)
    more = scene.send(USER, "继续", at=1.2)  # while customer service waits to try page 1 again
    assert_each_line_once(scene, more)


def test_a_page_read_with_continue_during_a_retry_is_not_owed_again_when_customer_service_gives_up(
    make_scene: Callable[..., Scene],
) -> None:
    """The same, but customer service gives page 1 up (three failed tries): the rest owed from page 1
    goes on after it past the page 继续 read, though the short answer is the one being read."""
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret", wechat_max_reply_bytes=600)
    scene.backend.answer("long", LONG, after=1.0)
    scene.backend.answer("short", "q2行0号：短回答。", after=0.9)
    scene.cs.refuse(USER, 2, 4, 5, errcode=None)  # page 1's three tries (the short answer's page is send 3)
    scene.send(USER, "long", at=0.0)
    scene.send(USER, "short", at=0.5)
    more = scene.send(USER, "继续", at=1.2)
    assert_each_line_once(scene, more)
