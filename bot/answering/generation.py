"""The background job: turn a question into an answer's pages, exactly once, durably.

Runs in a Dramatiq worker. A lease in Redis makes a duplicate delivery of the job wait instead of
generating twice; a job whose worker was killed is redelivered by Dramatiq, finds the answer
`running` with no live lease, and writes it again (keeping the pages the user already read).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import closing
from typing import Literal

import redis

from bot import texts
from bot.answering.paging import PageSplitter, Resume, decoration_reserve
from bot.llm import LLMError
from bot.media.images import Refusal
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.store import keys
from bot.store.answers import Answer, LeaseLost

log = logging.getLogger(__name__)

Outcome = Literal["done", "failed", "gone", "busy", "delivered"]

_FAILURE_TEXTS = {"timeout": texts.LLM_TIMEOUT, "unavailable": texts.LLM_FAILED, "failed": texts.LLM_FAILED}


class AnswerJob:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.answers = runtime.answers
        self.redis = runtime.redis
        self.lease_ms = int(runtime.settings.job_lease_seconds * 1000)
        self.budget = runtime.settings.wechat_max_reply_bytes - decoration_reserve()

    def run(self, answer_id: str) -> Outcome:
        answer = self.answers.get(answer_id)
        if answer is None:
            return "gone"
        if answer.finished:
            self._deliver_active(answer)
            return "delivered"
        lease = uuid.uuid4().hex
        if not self.redis.set(keys.answer_lease(answer_id), lease, nx=True, px=self.lease_ms):
            return "busy"
        try:
            with LeaseKeeper(self.redis, keys.answer_lease(answer_id), lease, self.lease_ms):
                return self._generate(answer, lease)
        except LeaseLost as exc:
            log.warning("%s; this run stops", exc)
            return "gone"
        finally:
            if self.redis.get(keys.answer_lease(answer_id)) == lease:
                self.redis.delete(keys.answer_lease(answer_id))

    def lease_left(self, answer_id: str) -> int:
        """Milliseconds until another run may take this answer over."""
        return max(int(self.redis.pttl(keys.answer_lease(answer_id))), 100)

    def _generate(self, answer: Answer, lease: str) -> Outcome:
        splitter, resume = PageSplitter(self.budget), Resume()
        if answer.status == "running":
            answer, resume = self._restart(answer)
        self.answers.set_status(answer, "running")
        if answer.delivery == "active":
            self.runtime.sender.typing(answer.openid)
        try:
            outcome = self._produce(answer, splitter, resume, lease)
        except (LLMError, TranscriptionError, Refusal) as exc:
            outcome = self._fail(answer, splitter, exc, lease)
        except LeaseLost:
            raise
        except Exception as exc:  # a bug must not leave the user waiting forever
            log.exception("answer %s: unexpected error", answer.id)
            outcome = self._fail(answer, splitter, LLMError("failed", repr(exc)), lease)
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
            return int(self.redis.get(keys.answer_sent(answer.id)) or 0)
        current = self.answers.current_target(answer.openid)
        return current.page if current is not None and current.answer.id == answer.id else 0

    def _produce(self, answer: Answer, splitter: PageSplitter, resume: Resume, lease: str) -> Outcome:
        if answer.kind == "image":
            self.answers.finish(answer, [self.runtime.images.make(answer.question)], "done", lease=lease)
            return "done"
        question = self._question(answer)
        if answer.kind == "minutes":
            system, question = texts.MINUTES_SYSTEM, texts.MINUTES_PROMPT.format(transcript=question)
            prompt = [{"role": "system", "content": system}, {"role": "user", "content": question}]
            return self._stream(answer, prompt, splitter, resume, lease, remember=None)
        if self.runtime.moderator.refuses(question):
            raise Refusal(texts.REFUSED_SENSITIVE, "question refused by moderation")
        system = self.runtime.overrides.system_prompt()
        prompt = self.runtime.history.prompt(answer.openid, system, question)
        return self._stream(answer, prompt, splitter, resume, lease, remember=question)

    def _question(self, answer: Answer) -> str:
        if answer.kind == "minutes":
            return answer.question or self._minutes_transcript(answer)
        if answer.kind != "voice" or answer.question:
            return answer.question
        text = self.runtime.transcriber.transcribe_media(answer.media_id)
        if not text:
            raise TranscriptionError("empty transcript")
        self.redis.hset(keys.answer(answer.id), "question", text)
        return text

    def _minutes_transcript(self, answer: Answer) -> str:
        """The meeting so far, once every voice piece has been transcribed (waits up to a minute)."""
        deadline = time.monotonic() + 60
        while (
            int(self.redis.get(keys.minutes_pending(answer.openid)) or 0) > 0 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        pieces = [str(piece) for piece in self.redis.lrange(keys.minutes(answer.openid), 0, -1)]
        if not pieces:
            raise Refusal(texts.MINUTES_EMPTY, "no minutes recorded")
        transcript = "\n".join(f"{index}. {piece}" for index, piece in enumerate(pieces, 1))
        # kept on the answer too, so that a restarted run writes the same minutes
        self.redis.hset(keys.answer(answer.id), "question", transcript)
        return transcript

    def _stream(
        self,
        answer: Answer,
        prompt: list[dict[str, str]],
        splitter: PageSplitter,
        resume: Resume,
        lease: str,
        remember: str | None,
    ) -> Outcome:
        """Stream the answer into pages; `remember`: the question to add to the history with it."""
        started = time.monotonic()
        model = self.redis.get(keys.user_model(answer.openid))
        parts: list[str] = []
        splitter.transform = self.runtime.moderator.mask
        splitter.holdback = max(self.runtime.moderator.longest - 1, 0)
        pieces = self.runtime.backend.stream(prompt, model=str(model) if model else None)
        with closing(pieces):  # a run that stops early (lease lost) hangs up on the LLM at once
            for piece in pieces:
                parts.append(piece)
                self._publish(answer, splitter.feed(resume.feed(piece)), lease)
        text = "".join(parts)
        if not text.strip():
            raise LLMError("failed", "the model returned an empty answer")
        self.runtime.metrics.observe("llm_latency_seconds", time.monotonic() - started)
        self._publish(answer, splitter.feed(resume.finish()), lease)
        last = splitter.finish()
        if self.answers.page_count(answer.id) == 0:
            self.runtime.metrics.observe("first_page_seconds", time.time() - answer.created)
        self.answers.finish(answer, last, "done", lease=lease)
        if remember is not None:  # after the guarded finish: a run that lost its lease adds nothing
            self.runtime.history.add_turn(answer.openid, remember, self.runtime.moderator.mask(text))
        if answer.kind == "minutes":  # only now is the recording no longer needed
            self.redis.delete(keys.minutes(answer.openid), keys.minutes_pending(answer.openid))
        return "done"

    def _publish(self, answer: Answer, pages: list[str], lease: str) -> None:
        if pages:
            if self.answers.page_count(answer.id) == 0:
                self.runtime.metrics.observe("first_page_seconds", time.time() - answer.created)
            self.answers.add_pages(answer, pages, lease=lease)
            self._deliver_active(answer)

    def _fail(self, answer: Answer, splitter: PageSplitter, exc: Exception, lease: str) -> Outcome:
        if isinstance(exc, Refusal):
            message = exc.text
        elif isinstance(exc, LLMError):
            message = texts.LLM_EMPTY if "empty" in exc.detail else _FAILURE_TEXTS[exc.kind]
        else:
            message = texts.VOICE_UNRECOGNISED if "empty" in str(exc) else texts.VOICE_FAILED
        log.warning("answer %s failed: %s", answer.id, exc)
        reason = "refused" if isinstance(exc, Refusal) else getattr(exc, "kind", "voice")
        self.runtime.metrics.inc("job_failures", reason=reason)
        if answer.kind == "minutes" and self.redis.exists(keys.minutes(answer.openid)):
            self.redis.set(keys.minutes_on(answer.openid), "1", ex=keys.MINUTES_TTL)  # /minutes end again
            message += texts.MINUTES_KEPT
        partial = splitter.finish() if splitter.rest.strip() else []
        self.answers.finish(answer, partial, "failed", message, lease=lease)
        return "failed"

    def _deliver_active(self, answer: Answer) -> None:
        if answer.delivery == "active":
            self.runtime.sender.send_ready_pages(answer.id)


#: renews a lease only while it is still ours
RENEW_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LeaseKeeper:
    """Keeps a run's lease alive on a timer (every third of its length) while the run works, so that a
    slow first token does not let a redelivered job start a second run."""

    def __init__(self, client: redis.Redis, key: str, token: str, lease_ms: int) -> None:
        self.renew = client.register_script(RENEW_IF_OURS)
        self.key, self.token, self.lease_ms = key, token, lease_ms
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)

    def _keep(self) -> None:
        while not self.stopped.wait(self.lease_ms / 3000):
            try:
                if not self.renew(keys=[self.key], args=[self.token, self.lease_ms]):
                    return  # lost: the guarded writes will stop the run
            except redis.exceptions.RedisError as exc:
                log.warning("lease %s not renewed: %s", self.key, exc)

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
