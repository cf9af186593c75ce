"""A patient follower, for end-to-end tests that run on the real clock: ask, then send 继续 until the
whole answer has been read — whichever of WeChat's attempts carried it, or a later message.

Which attempt carries an answer depends on the machine's speed; the scripted tests in tests/unit
decide that in fake time, and bench/ measures it. What an end-to-end test asserts with this helper
holds on any machine: every page of the user's own answer arrives once, nothing else is mixed in.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from bot import texts
from testing.simulator import Delivery, WeChatSimulator

FETCH = "继续"
#: a user gives up after this many messages (a hang guard: each message is one push of ≤ 3 attempts)
MAX_MESSAGES = 40
#: pause before asking again when the answer is not owed yet (its first push may still be running)
NOTHING_YET_PAUSE = 0.2
_LATE_HEAD = re.compile(
    "^" + re.escape(texts.LATE_ANSWER_PREFIX).replace(re.escape("{question}"), "(?P<question>.*?)"),
    re.DOTALL,
)


@dataclass
class Reading:
    """Everything one user sent and read while reading one answer."""

    question: str
    deliveries: list[Delivery] = field(default_factory=list)
    #: the answer's pages as read (headings and hints included)
    pages: list[str] = field(default_factory=list)
    #: the reply to one more 继续 after the last page (set when `check_end`)
    after: str | None = None

    @property
    def late(self) -> bool:
        """The answer came with a later message than the question (it carries the late-answer heading)."""
        return bool(self.pages) and _LATE_HEAD.match(self.pages[0]) is not None

    @property
    def text(self) -> str:
        """The answer the user read: pages joined, without the late-answer heading and the hints."""
        pages = [page.removesuffix(texts.MORE_HINT) for page in self.pages]
        if pages and (head := _LATE_HEAD.match(pages[0])) is not None:
            pages[0] = pages[0][head.end() :]
        return "".join(pages)

    @property
    def problems(self) -> list[str]:
        """Attempts WeChat would count as a failure other than a timeout (HTTP errors, bad XML...)."""
        return [
            f"{delivery.msg_id}: {attempt.problem}"
            for delivery in self.deliveries
            for attempt in delivery.attempts
            if attempt.problem not in (None, "timeout")
        ]


def read_answer(
    sim: WeChatSimulator,
    openid: str,
    question: str,
    *,
    asked: Delivery | None = None,
    check_end: bool = True,
    max_messages: int = MAX_MESSAGES,
) -> Reading:
    """Ask `question` (or start from `asked`, its delivery) and fetch until the last page is read.
    With `check_end`, send one more 继续 and keep its reply in `Reading.after` (NOTHING_MORE when
    nothing was left over to be delivered twice)."""
    reading = Reading(question)
    delivery = asked if asked is not None else sim.send_text(openid, question)
    while True:
        reading.deliveries.append(delivery)
        text = delivery.text
        if text is not None and text not in (texts.STILL_WORKING, texts.NOTHING_MORE):
            reading.pages.append(text)
            if not text.endswith(texts.MORE_HINT):
                break
        elif text == texts.NOTHING_MORE:
            if reading.pages:  # the rest was lost: let the test see it
                break
            time.sleep(NOTHING_YET_PAUSE)  # not released to other messages yet
        if len(reading.deliveries) >= max_messages:
            raise AssertionError(f"{openid}: no whole answer after {max_messages} messages: {reading}")
        delivery = sim.send_text(openid, FETCH)
    if check_end:
        end = sim.send_text(openid, FETCH)
        reading.deliveries.append(end)
        reading.after = end.text
    return reading
