"""Passive mode in fake time: 继续 that brings a late answer while the user is reading another one. The
late answer comes, its reply says that more follows, and the rest of the answer being read comes after
it, each line once, from where the user left it (with the late-answer heading there)."""

from __future__ import annotations

from collections.abc import Callable

from bot import texts
from testing.scene import Push, Scene

LONG = "".join(f"第{i}行：被动模式的长回答，用来测试迟到的多页回答。\n" for i in range(200))
USER = "user-1"


def late(question: str, text: str = "") -> str:
    return texts.LATE_ANSWER_PREFIX.format(question=question) + text


def read_to_the_end(scene: Scene, limit: int = 30) -> list[str]:
    """继续 until nothing more is left."""
    pages: list[str] = []
    for _ in range(limit):
        pages.append(scene.say(USER, "继续").text or "")
        if pages[-1] == texts.NOTHING_MORE:
            return pages
    raise AssertionError(f"still more after {limit} pages")


def each_line_once(texts_read: list[str]) -> None:
    read = "".join(texts_read)
    counts = {i: read.count(f"第{i}行：") for i in range(200)}
    assert {i: n for i, n in counts.items() if n != 1} == {}


def late_long_then_q2(scene: Scene) -> Push:
    """`q1`'s long answer is not ready within WeChat's attempts; `q2` gets its page 1 (and the note
    that q2 was received), which makes `q1` the answer being read."""
    scene.backend.answer("q1", LONG, after=20.0)
    scene.say(USER, "q1")
    scene.advance_to(30.0)
    scene.backend.answer("q2", "echo: q2 的回答", after=1.0)
    second = scene.say(USER, "q2")
    assert second.text is not None and second.text.startswith(late("q1", "第0行："))
    assert second.text.endswith(texts.MORE_HINT + texts.QUEUED_NOTE)
    return second


def test_continue_that_brings_a_late_answer_keeps_the_rest_being_read(
    make_scene: Callable[..., Scene],
) -> None:
    scene = make_scene()
    second = late_long_then_q2(scene)
    pages = read_to_the_end(scene)
    # q2's answer first, saying that more follows: the rest of q1, from its page 2, with the heading there
    assert pages[0] == late("q2", "echo: q2 的回答") + texts.MORE_HINT
    assert pages[1].startswith(late("q1", "第")) and "第0行：" not in pages[1]
    assert all(page.endswith(texts.MORE_HINT) for page in pages[1:-2])
    assert not any(texts.LATE_ANSWER_PREFIX[:4] in page for page in pages[2:])
    assert pages[-2].rstrip().endswith("第199行：被动模式的长回答，用来测试迟到的多页回答。")
    assert pages[-1] == texts.NOTHING_MORE
    each_line_once([second.text or "", *pages])


def test_the_rest_of_an_answer_still_being_written_comes_when_it_is_written(
    make_scene: Callable[..., Scene],
) -> None:
    """q1 has written its page 1 and is still writing when 继续 brings q2: the rest of q1 is kept, and
    arrives once it is written."""
    scene = make_scene()
    lines = LONG.splitlines(keepends=True)
    head, tail = "".join(lines[:35]), "".join(lines[35:])  # page 1 and part of page 2, then the rest
    scene.backend.stream_pieces("q1", [(20.0, head), (60.0, tail)])
    scene.say(USER, "q1")
    scene.advance_to(30.0)
    scene.backend.answer("q2", "echo: q2 的回答", after=1.0)
    second = scene.say(USER, "q2")
    assert second.text is not None and second.text.startswith(late("q1", "第0行："))
    brought = scene.say(USER, "继续")
    assert brought.text == late("q2", "echo: q2 的回答") + texts.MORE_HINT
    waiting = scene.say(USER, "继续")  # q1's page 2 is not written yet
    assert waiting.text == texts.STILL_WORKING
    scene.advance_to(61.0)
    pages = read_to_the_end(scene)
    assert pages[0].startswith(late("q1", "第")) and pages[-1] == texts.NOTHING_MORE
    each_line_once([second.text, *pages])


def test_a_new_question_that_brings_a_late_answer_does_not_bring_back_the_rest_left(
    make_scene: Callable[..., Scene],
) -> None:
    """The user reads page 1 of q1 and asks q2 and q3 instead of 继续: q1's rest is left for good; q2 and
    q3 come, and nothing more."""
    scene = make_scene()
    scene.backend.answer("q1", LONG, after=1.0)
    first = scene.say(USER, "q1")
    assert first.text is not None and first.text.endswith(texts.MORE_HINT)
    scene.backend.answer("q2", "echo: q2 的回答", after=20.0)
    assert scene.say(USER, "q2").text == texts.STILL_WORKING
    scene.advance_to(40.0)
    third = scene.say(USER, "q3")
    assert third.text == late("q2", "echo: q2 的回答") + texts.QUEUED_NOTE
    assert scene.say(USER, "继续").text == late("q3", "echo: q3")
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE


def test_two_continues_at_once_read_each_page_once(make_scene: Callable[..., Scene]) -> None:
    """Two 继续 sent together (on two web processes): one brings q2, the other q1's page 2, and the rest
    of q1 follows, each line once."""
    scene = make_scene(processes=2)
    second = late_long_then_q2(scene)
    at = scene.now + 1.0
    one, two = scene.send(USER, "继续", at=at), scene.send(USER, "继续", at=at)
    scene.settle()
    both = sorted([one.text or "", two.text or ""])
    assert late("q2", "echo: q2 的回答") + texts.MORE_HINT in both
    (other,) = [text for text in both if "q2 的回答" not in text]
    assert other.startswith(late("q1", "第")) and other.endswith(texts.MORE_HINT)
    pages = read_to_the_end(scene)
    each_line_once([second.text or "", *both, *pages])


def test_the_last_page_of_the_rest_says_more_follows_when_the_brought_answer_has_more(
    make_scene: Callable[..., Scene],
) -> None:
    """继续 brought q2, itself several pages: q1's rest comes first, and its last page says that more
    follows (q2's page 2), so that reading on while the hint says so reads both to their end."""
    scene = make_scene()
    other = "".join(f"第{i}段：第二个问题的长回答。\n" for i in range(60))
    scene.backend.answer("q1", LONG, after=20.0)
    scene.say(USER, "q1")
    scene.advance_to(30.0)
    scene.backend.answer("q2", other, after=1.0)
    second = scene.say(USER, "q2")
    pages = [second.text or ""]
    while pages[-1].endswith((texts.MORE_HINT, texts.QUEUED_NOTE)):
        pages.append(scene.say(USER, "继续").text or "")
    assert scene.say(USER, "继续").text == texts.NOTHING_MORE
    each_line_once(pages)
    read = "".join(pages)
    assert {i: read.count(f"第{i}段：") for i in range(60)} == dict.fromkeys(range(60), 1)
    # q2's page 1, then q1 from where the user left it to its end, then q2's page 2 on
    q1_end = next(n for n, page in enumerate(pages) if "第199行：" in page)
    q2_on = next(n for n, page in enumerate(pages) if "第59段：" in page)
    assert "第0段：" in pages[1] and q1_end < q2_on and pages[q1_end].endswith(texts.MORE_HINT)
