"""A job written again after its worker died (kill -9: the lease runs out, Dramatiq redelivers it): the
pages the user read are kept, and when the model writes the same text again, nothing of them is sent
twice — also when page 1 carries its answer page's link, or a masked sensitive word."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot import texts
from bot.store import keys
from testing.scene import Scene

LINES = [f"第{i}行：这是一个很长的回答，用来测试重写。\n" for i in range(120)]
TEXT = "".join(LINES)


def rewritten(scene: Scene) -> str:
    """Page 1 read, the worker killed halfway, the same text written again: what 继续 brings next."""
    scene.backend.hang("q", [(1.0, TEXT[: len(TEXT) // 2])])  # run 1 writes half, then its worker dies
    first = scene.say("user-1", "q")
    assert first.text is not None and first.text.endswith(texts.MORE_HINT)
    (answer_id,) = scene.jobs.enqueued
    scene.runtime.answers.redis.delete(keys.answer_lease(answer_id))  # the dead run's lease runs out
    scene.backend.answer("q", TEXT, after=1.0)
    scene.run_job(answer_id)
    scene.advance_to(scene.now + 5)
    return scene.say("user-1", "继续").text or ""


@pytest.mark.parametrize(
    "settings",
    [{}, {"public_base_url": "https://bot.example.com"}, {"sensitive_words": ["很长的回答"]}],
    ids=["plain", "page-link", "masked-word"],
)
def test_the_same_text_written_again_goes_on_after_what_was_read(
    make_scene: Callable[..., Scene], settings: dict[str, object]
) -> None:
    second = rewritten(make_scene(**settings))
    assert texts.REGENERATED_NOTE not in second
    assert "第0行" not in second and second.startswith("第")  # page 2 goes on where page 1 ended
