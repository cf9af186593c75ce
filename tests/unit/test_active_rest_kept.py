"""Active mode in fake time: an older question's answer that customer service sends after a newer,
longer answer (past the customer-service quota) must not take away that answer's rest: the user, told
「回复「继续」查看下一页」, did not ask anything since, and 继续 must bring the next page."""

from __future__ import annotations

from collections.abc import Callable

from bot import texts
from testing.scene import Scene

USER = "user-1"
LONG = "".join(f"第{i}行：客服消息分页测试内容，用来测试超过配额的回答。\n" for i in range(300))


def assert_read_once_with_continue(scene: Scene, pages: list[str]) -> None:
    """继续 until nothing more: with the `pages` already received, each line of the long answer came once."""
    for _ in range(60):
        got = scene.say(USER, "继续").text or ""
        if got == texts.NOTHING_MORE:
            break
        pages.append(got)
    read = "".join(pages)
    missing = [i for i in range(300) if read.count(f"第{i}行：") != 1]
    assert missing == [], f"lines of the long answer not read exactly once: {missing[:10]}…"


def test_an_older_answer_sent_later_keeps_the_rest_of_the_answer_being_read(
    make_scene: Callable[..., Scene],
) -> None:
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")
    scene.backend.answer("old", "echo: old", after=20.0)  # slow: comes after the long answer's pages
    scene.backend.answer("long", LONG, after=1.0)
    assert scene.say(USER, "old").text is None
    assert scene.say(USER, "long", at=2.0).text is None
    scene.advance_to(10.0)
    sent = scene.cs.texts(USER)
    assert len(sent) == scene.settings.wechat_cs_quota and sent[-1].endswith(texts.MORE_HINT)
    scene.advance_to(30.0)
    assert scene.cs.texts(USER)[-1] == "echo: old"  # the older question's answer, through customer service
    assert_read_once_with_continue(scene, list(sent))


def test_passive_an_older_question_answered_later_keeps_the_rest_of_the_answer_being_read(
    make_scene: Callable[..., Scene],
) -> None:
    """Passive mode, two questions sent together: the second's long answer comes first (its page 1 says
    more follows), then the first's, on its own push. The user asked nothing after reading page 1 of the
    long answer: 继续 reads its rest, each line once."""
    scene = make_scene()
    scene.backend.answer("old", "echo: old", after=8.0)
    scene.backend.answer("long", LONG, after=2.0)
    old, long = scene.send(USER, "old", at=0.0), scene.send(USER, "long", at=0.5)
    scene.settle()
    assert long.text is not None and long.text.endswith(texts.MORE_HINT) and long.replied_at == 2.5
    assert old.text == "echo: old" and (old.replied_at or 0) > 2.5
    assert_read_once_with_continue(scene, [long.text])
