"""The rest of the answer being read is kept for an older question's later answer (KEEP_FUNCTION) by
comparing when that question was asked with when the user last got a page. The two are written by
different processes (the web process that took the question, the worker whose customer-service sender
or the web process whose reply delivered the page): their clocks may differ by a second, and the
decision must not depend on it. Fake time: the bot's wall time is the scene's, the worker's a second
behind (or ahead)."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from bot import texts
from bot.store import answers as answers_module
from testing.scene import Scene

USER = "user-1"
LONG = "".join(f"第{i}行：客服消息分页测试内容，用来测试超过配额的回答。\n" for i in range(300))


def skewed(monkeypatch: pytest.MonkeyPatch, scene: Scene, worker_offset: float) -> None:
    """The answer store's wall time: the scene's, `worker_offset` added in the job worker's tasks."""

    def now() -> float:
        task = scene.clock.current_task()
        offset = worker_offset if task is not None and task.name.startswith("job") else 0.0
        return scene.clock.time() + offset

    fake = types.SimpleNamespace(
        time=now, monotonic=answers_module.time.monotonic, sleep=answers_module.time.sleep
    )
    monkeypatch.setattr(answers_module, "time", fake)


def read_on(scene: Scene, pages: list[str]) -> str:
    for _ in range(80):
        got = scene.say(USER, "继续", at=scene.now + 1.0).text or ""
        if got == texts.NOTHING_MORE:
            break
        pages.append(got)
    return "".join(pages)


@pytest.mark.parametrize("worker_offset", [0.0, -1.0])
def test_an_older_answer_keeps_the_rest_whatever_the_workers_clock(
    make_scene: Callable[..., Scene], monkeypatch: pytest.MonkeyPatch, worker_offset: float
) -> None:
    """Two questions sent half a second apart; the first's long answer is sent through customer service
    a second later (past the quota), the second's later still: the user asked nothing after those pages
    came (the second question was sent before), 继续 reads the long answer's rest."""
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")
    skewed(monkeypatch, scene, worker_offset)
    scene.backend.answer("old", "echo: old", after=20.0)
    scene.backend.answer("long", LONG, after=1.0)
    scene.send(USER, "long", at=0.0)
    scene.send(USER, "old", at=0.5)
    scene.advance_to(10.0)
    sent = scene.cs.texts(USER)
    assert len(sent) == scene.settings.wechat_cs_quota and sent[-1].endswith(texts.MORE_HINT)
    scene.advance_to(30.0)
    assert scene.cs.texts(USER)[-1] == "echo: old"
    read = read_on(scene, list(sent))
    missing = [i for i in range(300) if read.count(f"第{i}行：") != 1]
    assert missing == [], f"lines of the long answer not read exactly once: {missing[:10]}…"


@pytest.mark.parametrize("worker_offset", [0.0, 1.0])
def test_a_new_question_leaves_the_rest_whatever_the_workers_clock(
    make_scene: Callable[..., Scene], monkeypatch: pytest.MonkeyPatch, worker_offset: float
) -> None:
    """The user got the long answer's pages (past the quota) and asks a new question half a second later
    instead of 继续: its answer leaves the rest (README), whichever clock wrote what."""
    scene = make_scene(wechat_reply_mode="active", wechat_secret="scene-secret")
    skewed(monkeypatch, scene, worker_offset)
    scene.backend.answer("long", LONG, after=1.0)
    scene.backend.answer("new", "echo: new", after=1.0)
    scene.send(USER, "long", at=0.0)
    scene.advance_to(1.5)
    sent = scene.cs.texts(USER)
    assert len(sent) == scene.settings.wechat_cs_quota and sent[-1].endswith(texts.MORE_HINT)
    scene.send(USER, "new", at=1.5)
    scene.advance_to(10.0)
    assert scene.cs.texts(USER)[-1] == "echo: new"
    assert scene.say(USER, "继续", at=11.0).text == texts.NOTHING_MORE
