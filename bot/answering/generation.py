"""The background job: turn a question into an answer's pages, exactly once, durably.

Runs in a Dramatiq worker. A lease in Redis makes a duplicate delivery of the job wait instead of
generating twice; a job whose worker was killed is redelivered by Dramatiq, finds the answer
`running` with no live lease, and writes it again (keeping the pages the user already read).
What differs between kinds of answers (text, voice, image, minutes) lives in kinds.py.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import closing
from typing import Literal

from bot import texts
from bot.answering.errors import EXPECTED, describe
from bot.answering.kinds import Kind, Made, Prompt, kinds
from bot.answering.paging import PageSplitter, Resume, decoration_reserve
from bot.llm import LLMError
from bot.runtime import Runtime
from bot.store.answers import Answer, AnswerStore, LeaseLost

log = logging.getLogger(__name__)

Outcome = Literal["done", "failed", "gone", "busy", "delivered"]


class AnswerJob:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.answers = runtime.answers
        self.kinds = kinds(runtime)
        self.lease_ms = int(runtime.settings.job_lease_seconds * 1000)
        self.budget = runtime.settings.wechat_max_reply_bytes - decoration_reserve()

    def run(self, answer_id: str) -> Outcome:
        answer = self.answers.get(answer_id)
        if answer is None:
            return "gone"
        lease = self.answers.take_lease(answer_id, self.lease_ms)
        if lease is None:
            return "busy"
        try:
            with LeaseKeeper(self.answers, answer_id, lease, self.lease_ms):
                if answer.finished:  # written by an earlier run: only what is still to send
                    self._deliver_active(answer)
                    return "delivered"
                return self._generate(answer, lease)
        except LeaseLost as exc:
            log.warning("%s; this run stops", exc)
            return "gone"
        finally:
            self.answers.release_lease(answer_id, lease)

    def lease_left(self, answer_id: str) -> int:
        """Milliseconds until another run may take this answer over."""
        return self.answers.lease_left_ms(answer_id)

    def _generate(self, answer: Answer, lease: str) -> Outcome:
        splitter, resume = PageSplitter(self.budget), Resume()
        if answer.status == "running":
            answer, resume = self._restart(answer)
        self.answers.set_status(answer, "running")
        if answer.delivery == "active":
            self.runtime.sender.typing(answer.openid)
        kind = self.kinds.get(answer.kind, self.kinds["text"])
        try:
            outcome = self._produce(answer, kind, splitter, resume, lease)
        except LeaseLost:
            raise
        except Exception as exc:  # expected failures and bugs alike: the user is never left waiting
            if not isinstance(exc, EXPECTED):
                log.exception("answer %s: unexpected error", answer.id)
            outcome = self._fail(answer, kind, splitter, exc, lease)
        self._deliver_active(answer)
        return outcome

    def _restart(self, answer: Answer) -> tuple[Answer, Resume]:
        """A previous run died: keep the pages the user already has, write the rest again."""
        keep = self._pages_seen(answer)
        log.warning("answer %s: previous run died; regenerating (keeping %s pages)", answer.id, keep)
        seen = "".join(self.answers.page(answer, index) or "" for index in range(keep))
        self.answers.restart(answer, keep)
        fresh = self.answers.get(answer.id)
        return (fresh or answer), Resume(seen, texts.REGENERATED_NOTE)

    def _pages_seen(self, answer: Answer) -> int:
        if answer.delivery == "active":
            return self.answers.sent_count(answer.id)
        current = self.answers.current_target(answer.openid)
        return current.page if current is not None and current.answer.id == answer.id else 0

    def _produce(
        self, answer: Answer, kind: Kind, splitter: PageSplitter, resume: Resume, lease: str
    ) -> Outcome:
        work = kind.prepare(answer)
        if isinstance(work, Made):
            self.answers.finish(answer, work.pages, "done", lease=lease)
        else:
            self._stream(answer, work, splitter, resume, lease)
        kind.written(answer)
        return "done"

    def _stream(
        self, answer: Answer, prompt: Prompt, splitter: PageSplitter, resume: Resume, lease: str
    ) -> None:
        """Stream the answer into pages, then add the turn to the history (when the kind keeps one)."""
        moderator = self.runtime.moderator
        splitter.transform = moderator.mask
        splitter.holdback = max(moderator.longest - 1, 0)
        text = self._ask_llm(answer, prompt, splitter, resume, lease)
        self._publish(answer, splitter.feed(resume.finish()), lease)
        last = splitter.finish()
        if self.answers.page_count(answer.id) == 0:
            self.runtime.metrics.observe("first_page_seconds", time.time() - answer.created)
        self.answers.finish(answer, last, "done", lease=lease)
        if prompt.remember is not None:  # after the guarded finish: a run that lost its lease adds nothing
            self.runtime.history.add_turn(answer.openid, prompt.remember, moderator.mask(text))

    def _ask_llm(
        self, answer: Answer, prompt: Prompt, splitter: PageSplitter, resume: Resume, lease: str
    ) -> str:
        """The whole text, its pages published as they complete; the call's time and outcome measured
        (failed and timed-out calls too: a dashboard of successes only hides an outage)."""
        started, parts = time.monotonic(), []
        try:
            pieces = self.runtime.backend.stream(
                prompt.messages, model=self.runtime.models.get(answer.openid)
            )
            with closing(pieces):  # a run that stops early (lease lost) hangs up on the LLM at once
                for piece in pieces:
                    parts.append(piece)
                    self._publish(answer, splitter.feed(resume.feed(piece)), lease)
            if not "".join(parts).strip():
                raise LLMError("failed", "the model returned an empty answer")
        except LLMError as exc:
            self._observe_llm(started, exc.kind)
            raise
        self._observe_llm(started, "ok")
        return "".join(parts)

    def _observe_llm(self, started: float, outcome: str) -> None:
        self.runtime.metrics.observe("llm_latency_seconds", time.monotonic() - started, outcome=outcome)

    def _publish(self, answer: Answer, pages: list[str], lease: str) -> None:
        if pages:
            if self.answers.page_count(answer.id) == 0:
                self.runtime.metrics.observe("first_page_seconds", time.time() - answer.created)
            self.answers.add_pages(answer, pages, lease=lease)
            self._deliver_active(answer)

    def _fail(
        self, answer: Answer, kind: Kind, splitter: PageSplitter, exc: Exception, lease: str
    ) -> Outcome:
        failure = describe(exc)
        log.warning("answer %s failed: %s", answer.id, exc)
        self.runtime.metrics.inc("job_failures", reason=failure.reason)
        partial = splitter.finish() if splitter.rest.strip() else []
        self.answers.finish(answer, partial, "failed", failure.text + kind.failure_note(answer), lease=lease)
        return "failed"

    def _deliver_active(self, answer: Answer) -> None:
        if answer.delivery == "active":
            self.runtime.sender.send_ready_pages(answer.id)


class LeaseKeeper:
    """Keeps a run's lease alive on a timer (every third of its length) while the run works, so that a
    slow first token does not let a redelivered job start a second run."""

    def __init__(self, answers: AnswerStore, answer_id: str, token: str, lease_ms: int) -> None:
        self.answers, self.answer_id, self.token, self.lease_ms = answers, answer_id, token, lease_ms
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)

    def _keep(self) -> None:
        while not self.stopped.wait(self.lease_ms / 3000):
            try:
                if not self.answers.renew_lease(self.answer_id, self.token, self.lease_ms):
                    return  # lost: the guarded writes will stop the run
            except Exception as exc:  # Redis blinked: try again at the next tick
                log.warning("lease of answer %s not renewed: %s", self.answer_id, exc)

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
