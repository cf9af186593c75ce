"""The 5-second logic, in one place: which of WeChat's attempts carries which passive reply.

WeChat waits `WECHAT_ATTEMPT_TIMEOUT` (5 s) for each delivery of a push and delivers it up to
`WECHAT_ATTEMPTS` (3) times. For every delivery we:

1. answer at once with the reply this push already got, if any (WeChat retried after a reply
   that reached it late);
2. otherwise wait — woken by Redis pub/sub, not by a fixed poll — until something this push may
   deliver is ready, up to `WECHAT_ATTEMPT_TIMEOUT - WECHAT_REPLY_MARGIN` after it arrived, and
   claim it in one atomic step (a script in Redis) so that it is delivered exactly once;
3. if nothing is ready in time: on attempts 1 and 2 keep the connection open past WeChat's
   timeout, so that WeChat retries; on the last attempt reply that the answer is on its way and
   release the answer, which the user's next message then fetches.

What a push may deliver: the oldest released (late) answer of its user first, else its own
answer (a question), else the next page of the answer being read (继续).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from bot import texts
from bot.config import Settings
from bot.delivery.waiter import ReadyWaiter
from bot.pages.links import PAGE_KINDS, PageLinks
from bot.replies import image_media_id, preview, question_of
from bot.store.answers import AnswerStore, Peek, Target
from bot.store.metrics import Metrics
from bot.store.pushes import Plan, PushLog

log = logging.getLogger(__name__)

#: how long past WeChat's timeout a not-ready attempt keeps its connection open
HOLD_GRACE = 0.5
#: the push that asked keeps its answer this long past WeChat's last attempt (seconds)
RESERVE_GRACE = 2.0
#: a delivery looks and claims at most this many times in a row (each failed claim means another
#: delivery of the user took a page meanwhile)
CLAIM_TRIES = 20
#: why an answer waits for the user's next message (the undelivered list of /stats and the console)
LATE_REASON = "late: not ready within WeChat's attempts; waits for the user's next message"
HUNG_UP_REASON = "late: WeChat hung up on its last attempt before it was ready; waits for the next message"


class HungUp(Exception):
    """WeChat stopped waiting for the last attempt of this push before a page could be claimed for it."""


def _always() -> bool:
    return True


class PassiveDelivery:
    def __init__(
        self,
        settings: Settings,
        answers: AnswerStore,
        pushes: PushLog,
        waiter: ReadyWaiter,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        links: PageLinks | None = None,
    ) -> None:
        self.settings = settings
        #: answer pages (PUBLIC_BASE_URL): the last attempt's text links the page of the answer it awaits
        self.links = links if links is not None and links.enabled else None
        self.answers = answers
        self.pushes = pushes
        self.waiter = waiter
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep

    def reply(
        self,
        openid: str,
        push_key: str,
        plan: Plan,
        attempt: int,
        arrived: float,
        connected: Callable[[], bool] | None = None,
    ) -> str | None:
        """The text to reply on this attempt, or None: stay silent (WeChat has given up on it).

        `connected`: whether WeChat still waits for this attempt. On the last attempt nothing is claimed
        once it has hung up: the deadline counts from when the POST reached the bot, and a POST that
        reached it more than WECHAT_REPLY_MARGIN late would otherwise have its answer marked delivered
        after WeChat stopped listening — and no attempt follows to carry it. It then waits, released,
        for the user's next message, as an answer not ready in time does."""
        deadline = arrived + self.settings.reply_deadline
        last = attempt >= self.settings.wechat_attempts
        may_claim = connected if last and connected is not None else _always
        with self.waiter.ticket(openid) as ticket:
            try:
                while True:
                    text = self._try_claim(openid, push_key, plan, attempt, may_claim)
                    if text is not None:
                        return text
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        break
                    ticket.wait(remaining)
            except HungUp:
                log.warning("push %s: WeChat hung up on its last attempt before a reply was ready", push_key)
                return self._not_ready(openid, push_key, plan, attempt, arrived, HUNG_UP_REASON)
        return self._not_ready(openid, push_key, plan, attempt, arrived)

    def owed_now(self, openid: str, push_key: str) -> str | None:
        """Active mode: a late answer that is ready rides on this push's reply; nothing waits."""
        for _ in range(CLAIM_TRIES):
            found = self.answers.peek(openid, push_key, include_current=False)
            if found.reply is not None:
                return found.reply
            if found.target is None or not found.ready:
                return None
            if (text := self._deliver(found, push_key, Plan("fetch"), attempt=1)) is not None:
                return text
        return None

    def _try_claim(
        self, openid: str, push_key: str, plan: Plan, attempt: int, may_claim: Callable[[], bool] = _always
    ) -> str | None:
        """The reply this push gives now, or None (nothing ready yet). One round trip looks (the push's
        reply, else what it may deliver) and one claims: no lock, and of the deliveries that found the
        same page exactly one gets it (a claim fails when anything it looked at changed: look again).
        HungUp when a page is ready but `may_claim` says nobody would receive it."""
        for _ in range(CLAIM_TRIES):
            found = self.answers.peek(openid, push_key, include_current=plan.kind == "fetch")
            if found.reply is not None:
                return found.reply
            if found.target is None:
                return self._record(push_key, texts.NOTHING_MORE) if plan.kind == "fetch" else None
            if not found.ready:
                return None
            if not may_claim():
                raise HungUp(push_key)
            if (text := self._deliver(found, push_key, plan, attempt)) is not None:
                return text
        return None  # it kept changing under us: the waiting loop looks again

    def _deliver(self, found: Peek, push_key: str, plan: Plan, attempt: int) -> str | None:
        """The page `found`, composed and claimed; None when another delivery claimed it first."""
        target = found.target
        assert target is not None
        if found.page is None:
            return self._record(push_key, texts.NOTHING_MORE)
        continues = found.fetch and target.reading  # a 继续 (peeked with the current answer) on it
        text = compose(target, found.page, late=target.answer.owner != push_key and not continues)
        release = ""
        if plan.kind == "ask" and plan.answer_id != target.answer.id:
            release = plan.answer_id
            if image_media_id(text) is None:  # an image reply cannot carry a note
                text += texts.QUEUED_NOTE
        # the reply recorded, the page passed, the push's own answer released and the delivery counted:
        # one atomic step, one round trip before the reply goes out
        delivered = self.metrics.on_inc("pages_delivered", path=delivery_path(target, push_key, attempt))
        asked = plan.kind == "ask"  # its own answer is `release`, or else the answer claimed
        quota = self.settings.wechat_cs_quota
        claimed = self.answers.claim(
            push_key, found, text, release=release, then=delivered, asked=asked, quota=quota
        )
        return None if claimed is None else claimed.reply

    def _record(self, push_key: str, text: str) -> str:
        self.pushes.save_reply(push_key, text)
        return text

    def _not_ready(
        self, openid: str, push_key: str, plan: Plan, attempt: int, arrived: float, reason: str = LATE_REASON
    ) -> str | None:
        if attempt < self.settings.wechat_attempts:
            self.sleep(max(0.0, arrived + self.settings.wechat_attempt_timeout + HOLD_GRACE - self.clock()))
            return None
        if plan.kind == "ask":
            self.answers.release(plan.answer_id)
            self.metrics.undelivered(plan.answer_id, openid, reason)
        return self._record(push_key, self._still_working(openid, push_key, plan))

    def _still_working(self, openid: str, push_key: str, plan: Plan) -> str:
        """STILL_WORKING; with answer pages, the link to the page of the answer being written, where the
        follower can watch it instead of guessing when to write again (it still waits for their next
        message, as without pages)."""
        if self.links is None:
            return texts.STILL_WORKING
        try:
            answer_id = plan.answer_id if plan.kind == "ask" else self._awaited(openid, push_key)
            answer = self.answers.get(answer_id) if answer_id else None
            url = self.links.url(answer.id) if answer is not None and answer.kind in PAGE_KINDS else None
        except redis.exceptions.RedisError as exc:
            log.warning("no page link for %s: %s", push_key, exc)
            url = None
        return self.links.still_working(url) if url else texts.STILL_WORKING

    def _awaited(self, openid: str, push_key: str) -> str | None:
        """For 继续: the answer it waits for (the oldest owed one not ready yet)."""
        target = self.answers.next_target(openid, push_key, include_current=True)
        return target.answer.id if target is not None and not target.answer.finished else None


def reserved_for(settings: Settings, mode: str) -> float:
    """How long the push that asked holds its answer before any later message may fetch it: all of
    WeChat's attempts and a little grace (an active answer is sent, not held)."""
    if mode != "passive":
        return 0.0
    return settings.wechat_attempts * settings.wechat_attempt_timeout + RESERVE_GRACE


def delivery_path(target: Target, push_key: str, attempt: int) -> str:
    """How a page reached its user, for the `pages_delivered` metric."""
    if not target.from_owed:
        return "continue"
    return f"attempt_{attempt}" if target.answer.owner == push_key else "next_message"


def compose(target: Target, page: str, *, late: bool) -> str:
    """A page as the user reads it: a note on late answers, a hint when more follows."""
    if image_media_id(page) is not None:
        return page
    text = page.strip("\n") if target.page else page.rstrip("\n")
    # the heading goes on the first page that reaches the user late: page 0, or the page the
    # customer-service API stopped at
    if late and target.from_owed and target.page == target.answer.late_from:
        text = texts.LATE_ANSWER_PREFIX.format(question=preview(question_of(target.answer))) + text
    # more follows: the answer's next page, or the rest of the answer the user was reading (`rest_after`)
    if target.answer.more_after(target.page) or target.rest_after:
        text += texts.MORE_HINT
    return text
