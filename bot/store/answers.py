"""Answers in Redis: their pages as they are generated, and what each user still has to receive.

Per user there is an *owed* list (answers whose first page has not reached the user yet, oldest
first) and a *current* answer with a cursor (the answer being read page by page with 继续).
Every change to them happens under the user's lock, so that one page is delivered exactly once
whichever process or delivery path gets there first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from bot import texts
from bot.store import keys
from bot.store.notices import ReadyNotices

TERMINAL = ("done", "failed")
#: an unfinished answer with no run working on it for this long is given up (seconds)
ABANDONED_AFTER = 600
#: a message looks at most this many of its user's owed answers (oldest first)
OWED_SCAN = 20


#: KEYS: lease, pages, answer. ARGV: lease token, ttl, status ("" = unchanged), error, pages...
GUARDED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV > 4 then
    redis.call('RPUSH', KEYS[2], unpack(ARGV, 5))
    redis.call('EXPIRE', KEYS[2], ARGV[2])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], 'status', ARGV[3], 'error', ARGV[4]) end
return 1
"""


#: renews a lease only while it is still ours
RENEW_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
#: releases a lease only while it is still ours
RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another run of the job owns the answer now; this one must stop writing."""


@dataclass(frozen=True)
class Answer:
    id: str
    openid: str
    question: str
    status: str  # queued | running | done | failed
    error: str
    owner: str  # the push that may deliver it while reserved
    reserved_until: float
    delivery: str  # passive | active
    page_count: int
    restarts: int
    kind: str  # text | voice
    media_id: str
    created: float

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def page_ready(self, index: int) -> bool:
        """True when page `index` can be delivered (or it is known there is none)."""
        return index < self.page_count or self.finished

    def more_after(self, index: int) -> bool:
        """True when something follows page `index` (another page, or an error note)."""
        if index + 1 < self.page_count:
            return True
        if not self.finished:
            return True
        return self.status == "failed" and index + 1 == self.page_count and bool(self.error)

    def eligible_for(self, push_key: str, now: float) -> bool:
        """May this push deliver the answer? Its own push always; others once it is released."""
        return self.owner == push_key or self.reserved_until < now


@dataclass(frozen=True)
class Target:
    """The next thing a user should receive: page `page` of answer `answer`."""

    answer: Answer
    page: int
    from_owed: bool


class AnswerStore:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.notices = ReadyNotices(client)
        self._guarded_write = client.register_script(GUARDED_WRITE)
        self._renew = client.register_script(RENEW_IF_OURS)
        self._release = client.register_script(RELEASE_IF_OURS)

    # --- answers --------------------------------------------------------------------------
    def create(
        self,
        openid: str,
        question: str,
        *,
        owner: str,
        reserved_for: float,
        delivery: str,
        kind: str = "text",
        media_id: str = "",
    ) -> str:
        answer_id = uuid.uuid4().hex
        fields: dict[FieldT, EncodableT] = {
            "openid": openid,
            "question": question,
            "status": "queued",
            "owner": owner,
            "reserved_until": time.time() + reserved_for,
            "delivery": delivery,
            "created": time.time(),
            "kind": kind,
            "media_id": media_id,
        }
        pipe = self.redis.pipeline()
        pipe.hset(keys.answer(answer_id), mapping=fields)
        pipe.expire(keys.answer(answer_id), self.ttl)
        if delivery == "passive":
            pipe.rpush(keys.owed(openid), answer_id)
            pipe.expire(keys.owed(openid), self.ttl)
        pipe.execute()
        return answer_id

    def get(self, answer_id: str) -> Answer | None:
        pipe = self.redis.pipeline()
        pipe.hgetall(keys.answer(answer_id))
        pipe.llen(keys.answer_pages(answer_id))
        fields, page_count = pipe.execute()
        if not fields:
            return None
        return Answer(
            id=answer_id,
            openid=fields.get("openid", ""),
            question=fields.get("question", ""),
            status=fields.get("status", "queued"),
            error=fields.get("error", ""),
            owner=fields.get("owner", ""),
            reserved_until=float(fields.get("reserved_until", 0)),
            delivery=fields.get("delivery", "passive"),
            page_count=int(page_count),
            restarts=int(fields.get("restarts", 0)),
            kind=fields.get("kind", "text"),
            media_id=fields.get("media_id", ""),
            created=float(fields.get("created", 0)),
        )

    def page_count(self, answer_id: str) -> int:
        return int(self.redis.llen(keys.answer_pages(answer_id)))

    def page(self, answer: Answer, index: int) -> str | None:
        """Text of page `index`; past the last page of a failed answer, its error note."""
        if index < answer.page_count:
            text = self.redis.lindex(keys.answer_pages(answer.id), index)
            return None if text is None else str(text)
        if answer.status == "failed" and index == answer.page_count:
            return answer.error
        return None

    def set_status(self, answer: Answer, status: str, error: str = "") -> None:
        self.redis.hset(keys.answer(answer.id), mapping={"status": status, "error": error})
        self.notify(answer.openid)

    def finish(
        self, answer: Answer, last_pages: list[str], status: str, error: str = "", *, lease: str
    ) -> None:
        """Add the last pages and the final status together: nobody sees the end without the status."""
        self._write(answer, last_pages, lease, status, error)

    def add_pages(self, answer: Answer, pages: list[str], *, lease: str) -> None:
        if pages:
            self._write(answer, pages, lease)

    def _write(self, answer: Answer, pages: list[str], lease: str, status: str = "", error: str = "") -> None:
        """Atomically, and only while `lease` still holds the answer: a run that lost it writes nothing."""
        args: list[EncodableT] = [lease, self.ttl, status, error, *pages]
        lease_key, pages_key = keys.answer_lease(answer.id), keys.answer_pages(answer.id)
        if not self._guarded_write(keys=[lease_key, pages_key, keys.answer(answer.id)], args=args):
            raise LeaseLost(f"answer {answer.id}: another run holds it")
        self.notify(answer.openid)

    def restart(self, answer: Answer, keep_pages: int) -> None:
        """A worker died mid-answer: drop the pages nobody has seen and count the restart."""
        pipe = self.redis.pipeline()
        if keep_pages:
            pipe.ltrim(keys.answer_pages(answer.id), 0, keep_pages - 1)
        else:  # LTRIM 0 -1 would keep everything
            pipe.delete(keys.answer_pages(answer.id))
        pipe.hincrby(keys.answer(answer.id), "restarts", 1)
        pipe.hset(keys.answer(answer.id), "status", "running")
        pipe.execute()

    def release(self, answer_id: str) -> None:
        """The push that asked has given up waiting: any later message may now fetch it."""
        self.redis.hset(keys.answer(answer_id), "reserved_until", 0)
        self.notify_answer(answer_id)

    def notify(self, openid: str) -> None:
        self.notices.publish(openid)

    def notify_answer(self, answer_id: str) -> None:
        openid = self.redis.hget(keys.answer(answer_id), "openid")
        if openid:
            self.notify(str(openid))

    def set_question(self, answer_id: str, question: str) -> None:
        """The question as it became known while answering (a voice transcript, the meeting so far),
        kept so that a restarted run answers the same question."""
        self.redis.hset(keys.answer(answer_id), "question", question)

    # --- the lease of the run that writes an answer --------------------------------------
    def take_lease(self, answer_id: str, lease_ms: int) -> str | None:
        """A token for a new run, or None when another run holds the answer."""
        token = uuid.uuid4().hex
        taken = self.redis.set(keys.answer_lease(answer_id), token, nx=True, px=lease_ms)
        return token if taken else None

    def renew_lease(self, answer_id: str, token: str, lease_ms: int) -> bool:
        return bool(self._renew(keys=[keys.answer_lease(answer_id)], args=[token, lease_ms]))

    def release_lease(self, answer_id: str, token: str) -> None:
        self._release(keys=[keys.answer_lease(answer_id)], args=[token])

    def lease_left_ms(self, answer_id: str) -> int:
        """Milliseconds until another run may take this answer over (at least 100)."""
        return max(int(self.redis.pttl(keys.answer_lease(answer_id))), 100)

    # --- active mode: pages sent through the customer-service API ------------------------
    def sent_count(self, answer_id: str) -> int:
        return int(self.redis.get(keys.answer_sent(answer_id)) or 0)

    def set_sent(self, answer_id: str, count: int) -> None:
        self.redis.set(keys.answer_sent(answer_id), count, ex=self.ttl)

    def start_sending(self, answer_id: str, index: int) -> None:
        """Page `index` is on its way: hidden from 继续, but not sent until WeChat accepts it."""
        self.redis.set(keys.answer_sending(answer_id), index, ex=keys.SENDING_TTL)

    def confirm_sent(self, answer_id: str, index: int) -> None:
        """WeChat accepted page `index`: only now does it count as sent (a worker killed during the
        call leaves it unsent, so the next run sends it again rather than never)."""
        pipe = self.redis.pipeline()
        pipe.set(keys.answer_sent(answer_id), index + 1, ex=self.ttl)
        pipe.delete(keys.answer_sending(answer_id))
        pipe.execute()

    def stop_sending(self, answer_id: str) -> None:
        self.redis.delete(keys.answer_sending(answer_id))

    def _shown_or_showing(self, answer_id: str) -> int:
        """Pages sent, or on their way, through the customer-service API."""
        sent, sending = self.redis.mget(keys.answer_sent(answer_id), keys.answer_sending(answer_id))
        return max(int(sent or 0), int(sending) + 1 if sending is not None else 0)

    # --- what a user is owed --------------------------------------------------------------
    @contextmanager
    def user_lock(self, openid: str) -> Iterator[None]:
        lock = self.redis.lock(keys.user_lock(openid), timeout=keys.USER_LOCK_TTL, blocking_timeout=5)
        if not lock.acquire():
            raise TimeoutError(f"user lock for {openid} is busy")
        try:
            yield
        finally:
            with suppress(redis.exceptions.LockError):  # expired: the work under it was short
                lock.release()

    def next_target(self, openid: str, push_key: str, *, include_current: bool) -> Target | None:
        """The oldest *ready* owed answer this push may deliver, else the oldest one to wait for, else
        (for 继续) the current answer's next page. A ready answer never waits behind a slow one."""
        eligible = self._eligible_owed(openid, push_key)
        ready = [answer for answer in eligible if answer.page_ready(0)]
        if ready or eligible:
            return Target((ready or eligible)[0], 0, from_owed=True)
        return self.current_target(openid) if include_current else None

    def _eligible_owed(self, openid: str, push_key: str) -> list[Answer]:
        """The oldest OWED_SCAN owed answers this push may deliver: a user who piled up questions (with
        the rate limit off) costs each message a bounded number of reads, and the rest come in turn."""
        now, found = time.time(), []
        for answer_id in map(str, self.redis.lrange(keys.owed(openid), 0, OWED_SCAN - 1)):
            answer = self.get(answer_id)
            if answer is None:  # expired
                self.redis.lrem(keys.owed(openid), 0, answer_id)
            elif answer.eligible_for(push_key, now):
                found.append(self._fail_if_abandoned(answer, now))
        return found

    def _fail_if_abandoned(self, answer: Answer, now: float) -> Answer:
        """An answer nobody has worked on for ABANDONED_AFTER (its job was lost) is told as a failure."""
        if answer.finished or now - answer.created < ABANDONED_AFTER:
            return answer
        if self.redis.exists(keys.answer_lease(answer.id)):
            return answer
        self.redis.hset(keys.answer(answer.id), mapping={"status": "failed", "error": texts.LLM_TIMEOUT})
        return self.get(answer.id) or answer

    def current_target(self, openid: str) -> Target | None:
        state = self.redis.hgetall(keys.current(openid))
        if not state:
            return None
        answer = self.get(str(state["answer"]))
        if answer is None:
            return None
        cursor = int(state.get("cursor", 0))
        if answer.delivery == "active":  # pages being sent right now are not for 继续
            cursor = max(cursor, self._shown_or_showing(answer.id))
        return Target(answer, cursor, from_owed=False)

    def mark_delivered(self, target: Target, pages: int = 1) -> None:
        """Advance past `pages` pages of the target (call under the user lock)."""
        answer = target.answer
        cursor = max(target.page + pages, self.cursor(answer))  # never back: a page is read once
        pipe = self.redis.pipeline()
        if target.from_owed:
            pipe.lrem(keys.owed(answer.openid), 0, answer.id)
        pipe.hset(keys.current(answer.openid), mapping={"answer": answer.id, "cursor": cursor})
        pipe.expire(keys.current(answer.openid), self.ttl)
        pipe.execute()

    def cursor(self, answer: Answer) -> int:
        """Pages of `answer` the user has read, when it is the answer being read (else 0)."""
        state = self.redis.hgetall(keys.current(answer.openid))
        return int(state.get("cursor", 0)) if state.get("answer") == answer.id else 0

    def set_delivery(self, answer_id: str, delivery: str) -> None:
        self.redis.hset(keys.answer(answer_id), "delivery", delivery)

    def owe(self, answer_id: str, openid: str) -> None:
        """Put an answer (back) on the user's owed list, free for the next message to fetch."""
        pipe = self.redis.pipeline()
        pipe.hset(keys.answer(answer_id), mapping={"reserved_until": 0, "delivery": "passive"})
        pipe.rpush(keys.owed(openid), answer_id)
        pipe.expire(keys.owed(openid), self.ttl)
        pipe.execute()
        self.notify(openid)
