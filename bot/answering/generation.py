"""The background job: turn a question into an answer's pages, exactly once, durably.

Runs in a Dramatiq worker. A lease in Redis makes a duplicate delivery of the job wait instead of
generating twice; a job whose worker was killed is redelivered by Dramatiq, finds the answer
`running` with no live lease, and writes it again (keeping the pages the user already read).
What differs between kinds of answers (text, voice, image, minutes) lives in kinds.py.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from typing import Literal

import redis

from bot import texts
from bot.answering.errors import EXPECTED, describe
from bot.answering.kinds import Kind, Made, Prompt, kinds
from bot.answering.paging import PageSplitter, Resume, decoration_reserve, with_note
from bot.answering.writing import Writing
from bot.knowledge.base import sources_footer
from bot.llm import (
    ChatBackend,
    ChatMessage,
    LLMError,
    Piece,
    ToolCallingBackend,
    ToolCalls,
    ToolOffer,
)
from bot.runtime import Runtime
from bot.store.answers import Answer, AnswerStore, LeaseLost
from bot.store.pages import Source
from bot.tools import (
    MAX_CALLS,
    MAX_ROUNDS,
    TOOL_BUDGET_SECONDS,
    ToolBox,
    ToolResult,
    tool_messages,
    tool_note,
    tool_sources,
)

log = logging.getLogger(__name__)

#: `busy`: another run holds the lease; `lost`: this run lost it midway (another run took it over, or it
#: expired while Redis was away or the process stalled), and stopped
Outcome = Literal["done", "failed", "gone", "busy", "lost", "delivered"]
#: Redis could not be reached: the job is retried rather than the answer failed
REDIS_GONE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: between the words a model wrote before its tool calls and those of the next round
ROUND_BREAK = "\n\n"


class AnswerJob:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.answers = runtime.answers
        self.kinds = kinds(runtime)
        self.lease_ms = int(runtime.settings.job_lease_seconds * 1000)
        self.renewer = LeaseRenewer(self.answers, self.lease_ms)
        # every page keeps room for the notes added when it is delivered, and for its page's link
        reserve = decoration_reserve() + runtime.page_links.reserve()
        self.budget = runtime.settings.wechat_max_reply_bytes - reserve
        #: the run's clock (the thinking time, the typing indicator, the answer page's writes)
        self.clock: Callable[[], float] = time.monotonic

    def run(self, answer_id: str) -> Outcome:
        answer = self.answers.get(answer_id)
        if answer is None:
            return "gone"
        lease = self.answers.take_lease(answer_id, self.lease_ms)
        if lease is None:
            return "busy"
        try:
            with self.renewer.holding(answer_id, lease):
                if self.runtime.admin.is_banned(answer.openid):  # banned since it was queued
                    return self._banned(answer, lease)
                if answer.finished:  # written by an earlier run: only what is still to send
                    self._deliver_active(answer)
                    return "delivered"
                return self._generate(answer, lease)
        except LeaseLost as exc:
            log.warning("%s; this run stops", exc)
            return "lost"
        finally:
            self.answers.release_lease(answer_id, lease)

    def _banned(self, answer: Answer, lease: str) -> Outcome:
        """The user was banned after this answer was queued: no LLM call (README), the answer ends with
        the ban sentence, and nothing more is sent through customer service."""
        if not answer.finished:
            self.answers.finish(answer, [texts.BANNED], "done", lease=lease)
        return "done"

    def lease_left(self, answer_id: str) -> int:
        """Milliseconds until another run may take this answer over."""
        return self.answers.lease_left_ms(answer_id)

    def _generate(self, answer: Answer, lease: str) -> Outcome:
        splitter, resume = PageSplitter(self.budget), Resume()
        if answer.status == "running":
            answer, resume = self._restart(answer)
        writing = Writing(self.runtime, answer, lease, resumed=bool(resume.seen), clock=self.clock)
        self.answers.set_status(answer, "running")
        if answer.delivery == "active":
            self.runtime.sender.typing(answer.openid)
        kind = self.kinds.get(answer.kind, self.kinds["text"])
        try:
            outcome = self._produce(answer, kind, splitter, resume, lease, writing)
        except (LeaseLost, *REDIS_GONE):
            # Redis blinked (a restart, a failover): not the model's failure, and a failure written now
            # would lose the pages it could not store. Dramatiq retries the job (RETRIES in jobs.py), whose
            # next run finds the answer running without a lease and writes it again (_restart).
            raise
        except Exception as exc:  # expected failures and bugs alike: the user is never left waiting
            if not isinstance(exc, EXPECTED):
                log.exception("answer %s: unexpected error", answer.id)
            outcome = self._fail(answer, kind, splitter, resume, exc, lease, writing)
        self._deliver_active(answer)
        return outcome

    def _restart(self, answer: Answer) -> tuple[Answer, Resume]:
        """A previous run died: keep the pages the user already has, write the rest again."""
        keep = self._pages_seen(answer)
        log.warning("answer %s: previous run died; regenerating (keeping %s pages)", answer.id, keep)
        seen = "".join(self._as_written(answer, index) for index in range(keep))
        self.answers.restart(answer, keep)
        fresh = self.answers.get(answer.id)
        return (fresh or answer), Resume(seen, texts.REGENERATED_NOTE)

    def _pages_seen(self, answer: Answer) -> int:
        """Pages the user has: read with 继续 or taken from the owed list (an answer customer service
        stopped part-way), or (active) accepted by WeChat's customer service."""
        read = max(self.answers.cursor(answer), answer.owed_from or 0)
        return max(self.answers.sent_count(answer.id), read) if answer.delivery == "active" else read

    def _as_written(self, answer: Answer, index: int) -> str:
        """A stored page as the model's text made it: page 1 without its answer page's link, which the
        new run's text does not have (its sensitive words stay masked: Resume reads a mask as any text)."""
        page = self.answers.page(answer, index) or ""
        links = self.runtime.page_links
        url = links.url(answer.id) if index == 0 and links.enabled else None
        return page if url is None else links.without_note(page, url)

    def _produce(
        self, answer: Answer, kind: Kind, splitter: PageSplitter, resume: Resume, lease: str, writing: Writing
    ) -> Outcome:
        work = kind.prepare(answer)
        if isinstance(work, Made):
            self.answers.finish(answer, work.pages, "done", lease=lease)
        else:
            self._stream(answer, work, splitter, resume, lease, writing)
        kind.written(answer)
        return "done"

    def _stream(
        self,
        answer: Answer,
        prompt: Prompt,
        splitter: PageSplitter,
        resume: Resume,
        lease: str,
        writing: Writing,
    ) -> None:
        """Stream the answer into pages, then add the turn to the history (when the kind keeps one)."""
        moderator = self.runtime.moderator.current()  # the sensitive words in force, for the whole answer
        splitter.transform = moderator.mask
        splitter.holdback = max(moderator.longest - 1, 0)
        writing.start(list(prompt.sources))
        try:
            text, note, llm_seconds, found = self._ask_llm(answer, prompt, splitter, resume, lease, writing)
        except LLMError as exc:
            # an answer cut at the token limit stays in the history, so that 接着写 can go on from it
            if exc.detail == "length" and exc.written.strip() and prompt.remember is not None:
                exc.turn = (prompt.remember, moderator.mask(exc.written))
            raise
        # the knowledge base's sources follow the model's text: written by the bot, never the model
        # (the grounding's, then those the model found with the search tool)
        footer = sources_footer(prompt.sources, found)
        writing.found(found)
        tail = resume.feed(writing.finish()) + resume.feed(footer) + resume.finish()
        self._publish(answer, splitter.feed(tail), lease, writing, splitter)
        first = _pages_so_far(answer, splitter) == 0  # known here: no round trip before the end goes out
        first_seconds = self._first_page_seconds(answer, writing) if first else None
        last = writing.link(splitter.finish(), first=first, final=True)
        writing.end("done")  # the page has the whole text no later than the chat
        self.answers.finish(answer, last, "done", lease=lease)
        # after the guarded finish (a run that lost its lease adds nothing), in one round trip: the turn
        # in the history, then the call's time and the first page's, measured before the end went out
        remember = None if prompt.remember is None else (prompt.remember, note + moderator.mask(text))
        self._after_end(answer, remember, llm_seconds, first_seconds)

    def _after_end(
        self, answer: Answer, turn: tuple[str, str] | None, llm_seconds: float, first_seconds: float | None
    ) -> None:
        """What an answer's end records once it is out, in one round trip: the turn in the history (when
        the kind keeps one), the LLM call's time and the first page's. The answer is already delivered:
        when Redis fails here, that is a log line, not a failed answer."""
        pipe = self.runtime.history.pipeline()
        if turn is not None:
            self.runtime.history.add_turn_in(pipe, answer.openid, *turn, answer.created)
        self.runtime.metrics.observe_in(pipe, "llm_latency_seconds", llm_seconds, outcome="ok")
        if first_seconds is not None:
            self.runtime.metrics.observe_in(pipe, "first_page_seconds", first_seconds)
        try:
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("answer %s: its turn and metrics not recorded (%s)", answer.id, exc)

    def _ask_llm(
        self,
        answer: Answer,
        prompt: Prompt,
        splitter: PageSplitter,
        resume: Resume,
        lease: str,
        writing: Writing,
    ) -> tuple[str, str, float, tuple[Source, ...]]:
        """The whole text (the model's Markdown), its pages (chat text) published as they complete, the
        note of the tools it used for the history, the call's time, and the documents its knowledge-base
        searches read (for the sources after the answer). The call's outcome is measured here when
        it failed (failed and timed-out calls too: a dashboard of successes only hides an outage), by the
        caller after the answer's end when it succeeded. A reasoning model's thinking is never part of
        the text. With tools, the model may call them for up to MAX_ROUNDS rounds (and
        TOOL_BUDGET_SECONDS) before the request that must answer in words; the first page still goes out
        as soon as the answer's text fills it."""
        started, parts, used = self.clock(), [], []
        said: list[str] = []
        llm = prompt.llm or self.runtime.backend
        model = prompt.model or self.runtime.models.of_question(answer.openid, answer.model)
        messages = list(prompt.messages)
        try:
            for rounds in itertools.count():
                final = rounds >= MAX_ROUNDS or self.clock() - started > TOOL_BUDGET_SECONDS
                said, calls = [], None
                pieces = self._request(llm, messages, model, prompt.tools, final)
                with closing(pieces):  # a run that stops early (lease lost) hangs up on the LLM at once
                    for piece in pieces:
                        if isinstance(piece, ToolCalls):
                            calls = piece
                            continue
                        if isinstance(piece, str):
                            said.append(piece)
                        pages = splitter.feed(resume.feed(writing.take(piece)))
                        self._publish(answer, pages, lease, writing, splitter)
                parts += said
                # in parts now: an error after this round must not count it twice
                words, said = "".join(said), []
                if calls is None or final or prompt.tools is None:  # calls not offered are not run
                    break
                results = self._call_tools(prompt.tools, calls)
                messages += tool_messages(words, calls, results)  # the model sees what it already said
                used += results
                if words.strip():  # the next round's words start a paragraph of their own
                    parts.append(ROUND_BREAK)
                    pages = splitter.feed(resume.feed(writing.take(ROUND_BREAK)))
                    self._publish(answer, pages, lease, writing, splitter)
            if not "".join(parts).strip():
                raise LLMError("failed", "the model returned an empty answer", empty=True)
        except LLMError as exc:
            self._observe_llm_seconds(self.clock() - started, exc.kind)
            exc.written = "".join(parts + said)
            raise
        if used:
            log.info("answer %s: tools %s", answer.id, ", ".join(f"{r.name}({r.outcome})" for r in used))
        return "".join(parts), tool_note(used), self.clock() - started, tool_sources(used)

    @staticmethod
    def _request(
        llm: ChatBackend, messages: list[ChatMessage], model: str | None, tools: ToolBox | None, final: bool
    ) -> Generator[Piece | ToolCalls, None, None]:
        if tools is None or not isinstance(llm, ToolCallingBackend):
            return llm.stream(messages, model=model)
        return llm.stream_with_tools(messages, model=model, tools=ToolOffer(tools.schemas(), final=final))

    def _call_tools(self, tools: ToolBox, calls: ToolCalls) -> list[ToolResult]:
        """Run one round's calls (at most MAX_CALLS; those beyond get an error), each counted."""
        results = []
        for index, call in enumerate(calls.calls):
            if index < MAX_CALLS:
                result = tools.call(call.name, call.arguments)
            else:
                result = ToolResult(call.name, call.arguments, texts.TOOL_TOO_MANY, "error")
            name = result.name if result.outcome != "unknown" else "unknown"
            self.runtime.metrics.inc("tool_calls", function=name, outcome=result.outcome)
            results.append(result)
        return results

    def _observe_llm_seconds(self, seconds: float, outcome: str) -> None:
        self.runtime.metrics.observe("llm_latency_seconds", seconds, outcome=outcome)

    def _publish(
        self, answer: Answer, pages: list[str], lease: str, writing: Writing, splitter: PageSplitter
    ) -> None:
        """Store pages the splitter just cut (`pages`; the first one with its link and its metric)."""
        if pages:
            if _pages_so_far(answer, splitter) == len(pages):  # no page was stored before these
                self._observe_first_page(answer, writing)
                pages = writing.link(pages, first=True, final=False)
            self.answers.add_pages(answer, pages, lease=lease)
            self._deliver_active(answer)

    def _observe_first_page(self, answer: Answer, writing: Writing) -> None:
        self.runtime.metrics.observe("first_page_seconds", self._first_page_seconds(answer, writing))

    @staticmethod
    def _first_page_seconds(answer: Answer, writing: Writing) -> float:
        """Time to the first page, not counting a reasoning model's thinking (reasoning_seconds)."""
        return max(time.time() - answer.created - writing.thinking_seconds, 0.0)

    def _fail(
        self,
        answer: Answer,
        kind: Kind,
        splitter: PageSplitter,
        resume: Resume,
        exc: Exception,
        lease: str,
        writing: Writing,
    ) -> Outcome:
        # what was written, its last Markdown block too; in a run written again, not what the user has
        partial = splitter.feed(resume.feed(writing.finish()) + resume.abandon())
        partial += splitter.finish() if splitter.rest.strip() else []
        written = _pages_so_far(answer, splitter) > len(partial) or any(page.strip() for page in partial)
        failure = describe(exc, written)
        log.log(self._level(exc, written), "answer %s failed: %s", answer.id, self._cause(exc, written))
        self.runtime.metrics.inc("job_failures", reason=failure.reason)
        error = failure.text + kind.failure_note(answer)
        writing.end("failed", error)
        pages, note = with_note(partial, error, splitter.budget)
        self.answers.finish(answer, pages, "failed", note, lease=lease)
        if isinstance(exc, LLMError) and exc.turn is not None:
            self.runtime.history.add_turn(answer.openid, *exc.turn, answer.created)
        return "failed"

    def _cause(self, exc: Exception, written: bool) -> str:
        """The failure for the log; the token limit names its setting."""
        if isinstance(exc, LLMError) and exc.detail == "length":
            limit = self.runtime.settings.llm_max_tokens
            if not written:
                return (
                    f"LLM_MAX_TOKENS ({limit}) reached before any text (a reasoning model's thinking counts)"
                )
            return f"length: cut at LLM_MAX_TOKENS ({limit}); the text so far was delivered with a note"
        return str(exc)

    @staticmethod
    def _level(exc: Exception, written: bool) -> int:
        """An answer cut at the token limit after some text is the limit the operator set doing its work
        (the follower has the text and a note): INFO, not a WARNING on every long answer of a small limit
        (make run's first-run model: 64 tokens). It still counts in job_failures, as `cut_short`."""
        if isinstance(exc, LLMError) and exc.detail == "length" and written:
            return logging.INFO
        return logging.WARNING

    def _deliver_active(self, answer: Answer) -> None:
        if answer.delivery == "active":
            self.runtime.sender.send_ready_pages(answer.id)


class LeaseRenewer:
    """Keeps the leases of a process's runs alive while they work, so that a slow first token does not
    let a redelivered job start a second run: one thread for all of them, renewing every lease in one
    round trip each third of the lease's length (a thread per run cost its start and its join, about
    0.2 ms of CPU per answer). The thread ends when no run holds a lease, and starts again with the next
    one. A lease it can no longer renew is forgotten: the run's guarded writes stop that run."""

    def __init__(self, answers: AnswerStore, lease_ms: int) -> None:
        self.answers, self.lease_ms = answers, lease_ms
        self._leases: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, answer_id: str, token: str) -> Iterator[None]:
        lease = (answer_id, token)
        with self._lock:
            self._leases.add(lease)
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep, name="lease-renewer", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._leases.discard(lease)

    def _keep(self) -> None:
        while True:
            time.sleep(self.lease_ms / 3000)
            with self._lock:
                leases = list(self._leases)
                if not leases:
                    self._thread = None
                    return
            try:
                renewed = self.answers.renew_leases(leases, self.lease_ms)
            except Exception as exc:  # Redis blinked: try again at the next tick
                log.warning("leases of %s answers not renewed: %s", len(leases), exc)
                continue
            with self._lock:
                self._leases.difference_update(
                    lease for lease, ok in zip(leases, renewed, strict=True) if not ok
                )


def _pages_so_far(answer: Answer, splitter: PageSplitter) -> int:
    """The answer's pages, without asking Redis: those it had when this run started (kept by a restart)
    and those this run's splitter has cut (each stored as soon as it is cut; only the run holding the
    lease writes pages)."""
    return answer.page_count + splitter.pages
