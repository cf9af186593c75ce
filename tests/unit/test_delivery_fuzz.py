"""Randomised delivery scenarios in fake time (testing/scene.py): several users ask questions whose
answers take random times (inside WeChat's first attempt, past one or two attempts, past all three)
and have random lengths (one page or several), send 继续 at random moments, also while an earlier
push is still being retried, on two web processes; passive and active (customer-service) mode, with
random customer-service refusals. Then every user reads on with 继续 until nothing is left, and what
each user actually received is checked:

* WeChat never shows its failure page, and no reply breaks WeChat's rules;
* no line of any answer reaches the user twice, or reaches another user;
* every answer's first page reaches its user (nothing lost);
* an answer's lines arrive in order, from its first, none skipped;
* an answer not read to its end was left by a new question sent after its last page came
  (README: "a new question instead of 继续 leaves the rest");
* the reply before 「没有更多」 does not say that more follows.

Deterministic for a seed: the bot's code runs in fake time, one task at a time. FUZZ_SEEDS=a-b runs
more seeds (FUZZ_SEEDS=0-400: ~3 minutes).
"""

from __future__ import annotations

import os
import random
import re
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot import texts
from bot.llm.base import LLMError
from bot.store import answers as answers_module
from testing.scene import Push, Scene

MARK = re.compile(r"q(\d+)行(\d+)号")
CONTINUE = "继续"
PAGE_BYTES = 600
#: the reservation of an answer for the push that asked counts in wall time (time.time()): in a scene
#: that is the fake clock's wall time, as the rest of the bot's time
FAKE_WALL_TIME = True


def seeds() -> list[int]:
    spec = os.environ.get("FUZZ_SEEDS", "")
    if not spec:
        return list(range(20))
    first, _, last = spec.partition("-")
    return list(range(int(first), int(last or first) + 1))


@dataclass
class Question:
    qid: int
    openid: str
    text: str
    lines: int
    asked_at: float


@dataclass
class World:
    """What the users did and what they received."""

    questions: dict[int, Question] = field(default_factory=dict)
    #: per user: (time sent, text, push)
    sent: dict[str, list[tuple[float, str, Push]]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    #: pushes that spend longer than WECHAT_REPLY_MARGIN on the way (the bot cannot see that time: WeChat
    #: may hang up before the reply reaches it; README, "why 0.5 s")
    slow_network: set[int] = field(default_factory=set)


def answer_text(qid: int, lines: int, rng: random.Random) -> str:
    filler = "这是一段用来测试分页与送达的回答内容"
    return "".join(f"q{qid}行{i}号：{filler[: rng.randint(4, len(filler))]}。\n" for i in range(lines))


def llm_delay(rng: random.Random) -> float:
    """Inside attempt 1, past one attempt, past two, or past all three (WeChat's 5 s attempts)."""
    kind = rng.choices(["fast", "one", "two", "late"], weights=[4, 2, 2, 3])[0]
    ranges = {"fast": (0.05, 4.3), "one": (4.4, 9.4), "two": (9.6, 14.4), "late": (14.6, 45.0)}
    low, high = ranges[kind]
    return round(rng.uniform(low, high), 3)


def script_answer(scene: Scene, rng: random.Random, qid: int, text: str, failing: bool) -> None:
    """The answer in 1–3 pieces at random times, cut at line ends; or a failure after some of it."""
    first = llm_delay(rng)
    lines = text.splitlines(keepends=True)
    cuts = sorted(rng.sample(range(1, len(lines)), k=min(len(lines) - 1, rng.randint(0, 2))))
    pieces, at, start = [], first, 0
    for cut in [*cuts, len(lines)]:
        pieces.append((at, "".join(lines[start:cut])))
        start, at = cut, round(at + rng.uniform(0.1, 12.0), 3)
    question = f"问题{qid}"
    if failing:
        scene.backend.fail(question, LLMError("unavailable", "HTTP 503"), after=at, pieces=pieces[:-1])
    else:
        scene.backend.stream_pieces(question, pieces)


def play(scene: Scene, rng: random.Random, users: int, events: int) -> World:
    world = World()
    qid = 0
    for u in range(users):
        openid = f"user-{u}"
        world.sent[openid] = []
        t = round(rng.uniform(0, 3), 3)
        for _ in range(events):
            if rng.random() < 0.55:
                qid += 1
                multi = rng.random() < 0.5
                lines = rng.randint(12, 70) if multi else rng.randint(1, 6)
                text = answer_text(qid, lines, rng)
                failing = rng.random() < 0.08
                if failing:
                    lines = -1  # unknown: what was written before the failure
                script_answer(scene, rng, qid, text, failing)
                content = f"问题{qid}"
                world.questions[qid] = Question(qid, openid, content, lines, t)
            else:
                content = CONTINUE
            request_delay = rng.choice(
                [0.0, 0.0, 0.0, round(rng.uniform(0, 0.25), 3), round(rng.uniform(0, 1.5), 3)]
            )
            response_delay = 0.0 if request_delay > 0.25 else rng.choice([0.0, round(rng.uniform(0, 0.2), 3)])
            push = scene.send(
                openid, content, at=t, request_delay=request_delay, response_delay=response_delay
            )
            world.sent[openid].append((t, content, push))
            if request_delay + response_delay > scene.settings.wechat_reply_margin:
                world.slow_network.add(id(push))
            world.log.append(f"{t:8.3f} {openid} sends {content} (delays {request_delay}/{response_delay})")
            t = round(t + rng.choice([rng.uniform(0.2, 3), rng.uniform(3, 16), rng.uniform(16, 50)]), 3)
    scene.settle()
    scene.run_until(scene.jobs_done)
    scene.advance_to(scene.now + 30.0)
    # read on until nothing is left
    for openid in world.sent:
        for _ in range(120):
            push = scene.say(openid, CONTINUE, at=scene.now + 1.0)
            world.sent[openid].append((push.sent, CONTINUE, push))
            if push.text == texts.NOTHING_MORE:
                break
        else:
            raise AssertionError(f"{openid}: still more after 120 继续")
    return world


def received(scene: Scene, world: World, openid: str) -> list[tuple[float, str, str]]:
    """What the user read, in the order they read it: (time, how, text)."""
    got: list[tuple[float, str, str]] = []
    for _, content, push in world.sent[openid]:
        accepted = push.accepted
        if push.text is not None and accepted is not None and accepted.answered is not None:
            # when the bot answered: two pushes' replies that leave together may reach WeChat in either
            # order (the network's, not the bot's)
            got.append((accepted.answered, f"reply to {content}", push.text))
    for sent in scene.cs.sent:
        if sent.openid == openid:
            got.append((sent.at, "customer service", sent.text))
    # pages that leave at one instant (two pushes, or a push and a 客服 message) come in either order
    # pages that leave at one instant (two pushes, or a push and a 客服 message) reach WeChat in either order
    got.sort(
        key=lambda item: (item[0], [int(n) for n in MARK.findall(item[2])[0]] if MARK.search(item[2]) else [])
    )
    return got


def check(scene: Scene, world: World) -> list[str]:
    problems: list[str] = []
    for push in scene.pushes:
        if push.user_sees_failure and id(push) not in world.slow_network:
            problems.append(f"{push.openid} sees WeChat's failure page for {push.content!r} at {push.sent}")
        if push.delivery.violations:
            problems.append(f"{push.openid}: {push.delivery.violations}")
    for openid in world.sent:
        stream = received(scene, world, openid)
        seen: dict[int, list[tuple[float, int]]] = {}
        channels: dict[tuple[int, bool], list[int]] = {}
        for at, how, text in stream:
            for q, line in MARK.findall(text):
                seen.setdefault(int(q), []).append((at, int(line)))
                channels.setdefault((int(q), how == "customer service"), []).append(int(line))
            if text == texts.NOTHING_MORE:
                continue
        last_real = [text for _, _, text in stream if text != texts.NOTHING_MORE]
        if last_real and last_real[-1].endswith(texts.MORE_HINT):
            problems.append(f"{openid}: the last page says more follows, but 继续 says nothing more")
        for q, hits in seen.items():
            question = world.questions[q]
            if question.openid != openid:
                problems.append(f"{openid} received q{q}'s lines, which {question.openid} asked")
                continue
            lines = [line for _, line in hits]
            if len(lines) != len(set(lines)):
                dup = sorted({x for x in lines if lines.count(x) > 1})
                problems.append(f"{openid}: q{q} lines received twice: {dup[:5]}")
            if sorted(lines) != list(range(len(lines))):
                problems.append(f"{openid}: q{q} lines skipped: {lines[:40]}")
            # a 继续 while customer service is still trying a page reads the page after it (pages being sent
            # are not for 继续, by design): the two channels are each in order
            by_channel = [channels.get((q, cs), []) for cs in (False, True)]
            swapped = any(part != sorted(part) for part in by_channel) or not scene.cs.sent
            if lines != sorted(lines) and swapped:
                problems.append(f"{openid}: q{q} lines out of order: {lines[:40]}")
            if question.lines >= 0 and len(set(lines)) < question.lines:
                last_at = max(at for at, _ in hits)
                moved_on = any(
                    moved_on_by(world, stream, question, other, push, last_at)
                    for sent_at, other, push in world.sent[openid]
                )
                if not moved_on:
                    problems.append(
                        f"{openid}: q{q} read {len(set(lines))} of {question.lines} lines, and no new "
                        "question left it"
                    )
        for q, question in world.questions.items():
            if question.openid == openid and q not in seen and question.lines != -1:
                problems.append(
                    f"{openid}: q{q} ({question.lines} lines, asked at {question.asked_at}) never arrived"
                )
    return problems


def moved_on_by(
    world: World,
    stream: list[tuple[float, str, str]],
    left: Question,
    content: str,
    push: Push,
    last_at: float,
) -> bool:
    """May the question `content` have left the rest of `left`, read up to `last_at`? A new question
    (asked after `left`) sent after that page came, or whose reply or own answer came after it."""
    if content == CONTINUE or push.sent <= left.asked_at:
        return False
    if push.sent >= last_at - 1e-9:
        return True
    if push.replied_at is not None and push.text is not None and push.replied_at > last_at:
        return True
    own = next((q for q in world.questions.values() if q.text == content), None)
    marks = [at for at, _, text in stream if own is not None and f"q{own.qid}行0号" in text]
    return any(at > last_at for at in marks)


@pytest.fixture
def fake_wall_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Scene], None]]:
    def use(scene: Scene) -> None:
        if FAKE_WALL_TIME:
            fake = types.SimpleNamespace(time=scene.clock.time, monotonic=time.monotonic, sleep=time.sleep)
            monkeypatch.setattr(answers_module, "time", fake)

    yield use


def describe(scene: Scene, world: World) -> str:
    out = list(world.log)
    for openid in world.sent:
        for at, how, text in received(scene, world, openid):
            marks = MARK.findall(text)
            summary = f"q{marks[0][0]} L{marks[0][1]}-L{marks[-1][1]}" if marks else text[:30]
            out.append(
                f"{at:8.3f} {openid} <- ({how}) {summary}{' +MORE' if text.endswith(texts.MORE_HINT) else ''}"
            )
    return "\n".join(out)


@pytest.mark.parametrize("mode", ["passive", "active"])
@pytest.mark.parametrize("seed", seeds())
def test_random_scenarios_deliver_every_answer_once_in_order(
    make_scene: Callable[..., Scene], fake_wall_time: Callable[[Scene], None], seed: int, mode: str
) -> None:
    rng = random.Random(f"{mode}-{seed}")
    options: dict[str, Any] = {"wechat_max_reply_bytes": PAGE_BYTES}
    if mode == "active":
        options |= {"wechat_reply_mode": "active", "wechat_secret": "scene-secret"}
    scene = make_scene(processes=2, **options)
    fake_wall_time(scene)
    users = rng.randint(1, 3)
    if mode == "active":
        for u in range(users):
            refused = rng.sample(range(1, 40), k=rng.randint(0, 4))
            scene.cs.refuse(f"user-{u}", *refused, errcode=rng.choice([45047, 45015, None]))
    world = play(scene, rng, users=users, events=rng.randint(3, 9))
    problems = check(scene, world)
    assert not problems, "\n".join(problems) + "\n\n" + describe(scene, world)
