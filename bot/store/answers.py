"""Answers in Redis: their pages as they are generated, and what each user still has to receive.

Per user there is an *owed* list (answers whose first page has not reached the user yet, oldest
first; and answers stopped part-way, from the page they stopped at) and a *current* answer with a
cursor (the answer being read page by page with 继续).
Every change to them happens under the user's lock, so that one page is delivered exactly once
whichever process or delivery path gets there first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.typing import EncodableT, FieldT

from bot import texts
from bot.store import keys
from bot.store.notices import ReadyNotices
from bot.store.pushes import OnFirst

TERMINAL = ("done", "failed")
#: an unfinished answer with no run working on it for this long is given up (seconds)
ABANDONED_AFTER = 600
#: a message looks at most this many of its user's owed answers (oldest first)
OWED_SCAN = 20
#: a question looks at most this many of the questions its user asked just before it (asked_before)
ASKED_SCAN = 20


#: KEYS: lease, pages, answer. ARGV: lease token, ttl, status ("" = unchanged), error, the user's ready
#: channel, pages... The notice goes out in the same step: a waiting delivery wakes one round trip sooner.
GUARDED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV > 5 then
    redis.call('RPUSH', KEYS[2], unpack(ARGV, 6))
    redis.call('EXPIRE', KEYS[2], ARGV[2])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], 'status', ARGV[3], 'error', ARGV[4]) end
redis.call('PUBLISH', ARGV[5], '1')
return 1
"""

#: Lua: has the answer being read (`id`, read up to `cursor`) pages its user has not got: a page past the
#: cursor, its failure note, or pages still to be written? Only a passive answer not owed already: its
#: rest is what a 继续 that takes an owed answer puts back on the owed list (CLAIM), instead of losing it
#: when the owed answer becomes the one being read. An active answer's rest is its sender's.
#: With `active_too` (the owed answer stays owed and does not take the place of the answer being read),
#: an active answer's pages past those customer service sent count too: the next 继续 brings them.
#: `prefix`, `pages`, `sent`, `sending`: the answer key's prefix and its suffixes; `owed`: the owed list.
UNREAD_FUNCTION = """
local function unread(prefix, pages, sent, sending, owed, id, cursor, active_too)
    local a = redis.call('HMGET', prefix .. id, 'status', 'error', 'delivery')
    if not a[1] then return false end
    if a[3] == 'active' then
        if not active_too then return false end
        local done = redis.call('GET', prefix .. id .. sent)
        local going = redis.call('GET', prefix .. id .. sending)
        cursor = math.max(cursor, tonumber(done or '0'), going and tonumber(going) + 1 or 0)
    end
    if redis.call('LPOS', owed, id) then return false end
    local count = redis.call('LLEN', prefix .. id .. pages)
    if cursor < count or (a[1] ~= 'done' and a[1] ~= 'failed') then return true end
    return a[1] == 'failed' and cursor == count and (a[2] or '') ~= ''
end
"""

#: Lua: put the answer being read (`id`, read up to `cursor`) back at the head of the owed list, from the
#: page the user got to and with the late-answer heading there, when it has pages the user has not got
#: (`unread`, counting what customer service sent) — not while its own customer-service sender is still
#: at work (a page on its way, or the quota not used up): its next page makes it the answer being read
#: again. True when kept.
KEEP_FUNCTION = """
local function keep(prefix, pages, sent, sending, owed, id, cursor, quota, ttl)
    local key = prefix .. id
    local a = redis.call('HMGET', key, 'delivery', 'status')
    if a[1] == 'active' then
        local done = tonumber(redis.call('GET', key .. sent) or '0')
        if redis.call('GET', key .. sending) then return false end
        if done < quota and (done < redis.call('LLEN', key .. pages)
                or (a[2] ~= 'done' and a[2] ~= 'failed')) then return false end
        cursor = math.max(cursor, done)
    end
    if not unread(prefix, pages, sent, sending, owed, id, cursor, true) then return false end
    redis.call('HSET', key, 'owed_from', cursor, 'late_from', cursor, 'reserved_until', 0)
    redis.call('LPUSH', owed, id)
    redis.call('EXPIRE', owed, ttl)
    return true
end
"""

#: What a push may deliver now, read in one step (the Python of `next_target` and `page`, which say
#: why): the push's reply if it has one; else the oldest ready owed answer it may deliver, else the
#: oldest one to wait for, else (with include_current) the current answer's next page. An owed answer's
#: page is its `owed_from` (0 when it has none). On the way it drops expired ids from the owed list, and
#: answers owed from a page past their end (nothing left), and fails answers abandoned for
#: ABANDONED_AFTER, as `next_target` does.
#: With include_current (a 继续): for an owed answer, whether the answer being read (another one) has
#: pages the user has not got (`unread`), the *rest after* its page: the reply says that more follows,
#: and CLAIM puts that rest back on the owed list when the owed answer becomes the one being read (it
#: has no `owed_from`; one that has is read before the answer being read, which stays so).
#: Nothing is delivered here: `CLAIM` does that, if nothing changed meanwhile.
#: KEYS: the push's record, the owed list, the current hash, the user lock. ARGV: push key, now,
#: include_current (1/0), OWED_SCAN, ABANDONED_AFTER, the failure text, the answer key's prefix, the
#: suffixes of its pages, lease, sent and sending keys. Returns {"reply", text}, {"busy"} (the user
#: lock is held: its holder is changing what the user is owed), {"none"}, or {"ready" | "wait", id,
#: page index, from owed (1/0), page count, page text or false, the answer is the current one (1/0), the
#: rest after (1/0), the answer's fields...}.
PEEK = (
    UNREAD_FUNCTION
    + """
local reply = redis.call('HGET', KEYS[1], 'reply')
if reply then return {'reply', reply} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'busy'} end
local now = tonumber(ARGV[2])
local function load(id)
    local fields = redis.call('HGETALL', ARGV[7] .. id)
    if #fields == 0 then return nil end
    local a = {id = id, fields = fields}
    for i = 1, #fields, 2 do a[fields[i]] = fields[i + 1] end
    a.count = redis.call('LLEN', ARGV[7] .. id .. ARGV[8])
    return a
end
local function finished(a) return a.status == 'done' or a.status == 'failed' end
local function from(a) return tonumber(a.owed_from or '0') end
local function spent(a)
    local i = from(a)
    local note = a.status == 'failed' and i == a.count and (a.error or '') ~= ''
    return finished(a) and i >= a.count and not note
end
local eligible, ready
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[4]) - 1)) do
    local a = load(id)
    if not a then
        redis.call('LREM', KEYS[2], 0, id)
    elseif a.owner == ARGV[1] or tonumber(a.reserved_until or '0') < now then
        if not finished(a) and now - tonumber(a.created or '0') >= tonumber(ARGV[5])
                and redis.call('EXISTS', ARGV[7] .. id .. ARGV[9]) == 0 then
            redis.call('HSET', ARGV[7] .. id, 'status', 'failed', 'error', ARGV[6])
            a = load(id)
        end
        if a.owed_from and spent(a) then
            redis.call('LREM', KEYS[2], 0, id)
        else
            eligible = eligible or a
            if a.count > from(a) or finished(a) then
                ready = a
                break
            end
        end
    end
end
local target, index, owed = ready or eligible, 0, 1
if target then index = from(target) end
if not target then
    if ARGV[3] ~= '1' then return {'none'} end
    local state = redis.call('HMGET', KEYS[3], 'answer', 'cursor')
    if not state[1] then return {'none'} end
    target = load(state[1])
    if not target then return {'none'} end
    index, owed = tonumber(state[2] or '0'), 0
    if target.delivery == 'active' then
        local sent = tonumber(redis.call('GET', ARGV[7] .. target.id .. ARGV[10]) or '0')
        local sending = redis.call('GET', ARGV[7] .. target.id .. ARGV[11])
        index = math.max(index, sent, sending and tonumber(sending) + 1 or 0)
    end
end
local page = false
local is_ready = index < target.count or finished(target)
if index < target.count then
    page = redis.call('LINDEX', ARGV[7] .. target.id .. ARGV[8], index)
elseif target.status == 'failed' and index == target.count and (target.error or '') ~= '' then
    page = target.error
end
local current = redis.call('HMGET', KEYS[3], 'answer', 'cursor')
local reading = owed == 0 or current[1] == target.id
local rest = ARGV[3] == '1' and owed == 1 and current[1] and not reading
        and unread(ARGV[7], ARGV[8], ARGV[10], ARGV[11], KEYS[2], current[1], tonumber(current[2] or '0'),
                   target.owed_from ~= nil)
return {is_ready and 'ready' or 'wait', target.id, index, owed, target.count, page, reading and 1 or 0,
        rest and 1 or 0, unpack(target.fields)}
"""
)

#: Deliver what PEEK found, if it is still what this push may deliver: record the push's reply and move
#: past the page (off the owed list; the current answer's cursor forward, never back), and release the
#: push's own answer when it delivers another one (with its notice). One step, so that of any number of
#: deliveries that peeked the same page exactly one claims it; the others peek again.
#: An answer the customer-service API stopped part-way (`owe(start=...)`, it has `owed_from`) stays on
#: the owed list, `owed_from` moved past the page, while more follows the page: each later message
#: (继续 or a new question) takes its next page, before anything else — a question answered through the
#: customer-service API meanwhile (it becomes the current answer) does not take its place. It moves the
#: current answer's cursor only when it is the current answer (never makes itself current: the current
#: answer's own rest stays readable after it).
#: A 继续 that takes an owed answer which becomes the one being read, while the answer being read has
#: unread pages (PEEK's *rest after*), puts that answer back at the head of the owed list, owed from its
#: cursor with the late-answer heading there (`owed_from`, `late_from`, as `AnswerStore.owe`): the user
#: asked for its next page, so it comes next, not never. A new question does not: its asker moved on.
#: A 继续's claim of an owed page fails ("changed") when it finds that rest otherwise than PEEK did: the
#: reply's more hint says what it found.
#: KEYS: the push's record, the owed list, the current hash, the user lock, the answer, the answer to
#: release (the answer again when none). ARGV: reply text, answer id, page index, from owed (1/0), the
#: answer's restarts when peeked, ttl, release (1/0), the user's ready channel, the answer's sent and
#: sending keys, more follows the page (1/0), PEEK's rest after for a 继续 (1/0; '': not a 继续), the
#: answer key's prefix, the suffixes of its pages, sent and sending keys, a question's push (1/''; KEYS[6]
#: is then its own answer: asked before the user last got a page — its `seen` below the current hash's
#: `got`, see KEEP_REST — its claim keeps the rest of the answer being read, KEEP_FUNCTION), the
#: customer-service quota. Returns
#: {"ok"}, {"reply", text} (another delivery of the push answered it), {"busy"} or {"changed"}.
CLAIM = (
    UNREAD_FUNCTION
    + KEEP_FUNCTION
    + """
local reply = redis.call('HGET', KEYS[1], 'reply')
if reply then return {'reply', reply} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'busy'} end
if (redis.call('HGET', KEYS[5], 'restarts') or '0') ~= ARGV[5] then return {'changed'} end
local state = redis.call('HMGET', KEYS[3], 'answer', 'cursor', 'got')
local cursor = 0
if state[1] == ARGV[2] then cursor = tonumber(state[2] or '0') end
local index = tonumber(ARGV[3])
local resumed = false
if ARGV[4] == '1' then
    if not redis.call('LPOS', KEYS[2], ARGV[2]) then return {'changed'} end
    local from = redis.call('HGET', KEYS[5], 'owed_from')
    if tonumber(from or '0') ~= index then return {'changed'} end
    resumed = from ~= false
else
    if state[1] ~= ARGV[2] then return {'changed'} end
    local next = cursor
    if redis.call('HGET', KEYS[5], 'delivery') == 'active' then
        local sent, sending = redis.call('GET', ARGV[9]), redis.call('GET', ARGV[10])
        next = math.max(next, tonumber(sent or '0'), sending and tonumber(sending) + 1 or 0)
    end
    if next ~= index then return {'changed'} end
end
local rest = ARGV[12] ~= '' and ARGV[4] == '1' and state[1] and state[1] ~= ARGV[2]
        and unread(ARGV[13], ARGV[14], ARGV[15], ARGV[16], KEYS[2], state[1], tonumber(state[2] or '0'),
                   resumed)
if ARGV[12] ~= '' and (rest and '1' or '0') ~= ARGV[12] then return {'changed'} end
redis.call('HSET', KEYS[1], 'reply', ARGV[1])
if rest and not resumed then
    local from = tonumber(state[2] or '0')
    redis.call('HSET', ARGV[13] .. state[1], 'owed_from', from, 'late_from', from, 'reserved_until', 0)
    redis.call('LPUSH', KEYS[2], state[1])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
elseif ARGV[17] == '1' and not resumed and state[1] and state[1] ~= ARGV[2]
        and tonumber(redis.call('HGET', KEYS[6], 'seen') or state[3] or '0') < tonumber(state[3] or '0') then
    -- a question asked before the user got the last page of the answer being read is no question
    -- "instead of 继续": its answer, coming now, keeps that answer's rest for the next message
    keep(ARGV[13], ARGV[14], ARGV[15], ARGV[16], KEYS[2], state[1], tonumber(state[2] or '0'),
         tonumber(ARGV[18]), ARGV[6])
end
if resumed then
    -- past what 继续 has read of it meanwhile (pages being sent are 继续's to skip, then owed on refusal)
    local nxt = math.max(index + 1, tonumber(redis.call('HGET', KEYS[5], 'read') or '0'))
    if state[1] == ARGV[2] then nxt = math.max(nxt, cursor) end
    redis.call('HSET', KEYS[5], 'owed_from', nxt)
    if ARGV[11] ~= '1' then redis.call('LREM', KEYS[2], 0, ARGV[2]) end
    if state[1] == ARGV[2] then
        redis.call('HSET', KEYS[3], 'cursor', math.max(index + 1, cursor))
        redis.call('EXPIRE', KEYS[3], ARGV[6])
    end
    if state[1] then redis.call('HINCRBY', KEYS[3], 'got', 1) end
else
    if ARGV[4] == '1' then redis.call('LREM', KEYS[2], 0, ARGV[2]) end
    local read = math.max(index + 1, cursor)
    redis.call('HSET', KEYS[3], 'answer', ARGV[2], 'cursor', read)
    redis.call('HINCRBY', KEYS[3], 'got', 1)
    redis.call('EXPIRE', KEYS[3], ARGV[6])
    -- the answer keeps what was read of it (its `read`): the current hash forgets it when another answer
    -- becomes the one being read, and its customer-service sender or its owed rest go on from there
    if tonumber(redis.call('HGET', KEYS[5], 'read') or '0') < read then
        redis.call('HSET', KEYS[5], 'read', read)
    end
end
if ARGV[7] == '1' then
    redis.call('HSET', KEYS[6], 'reserved_until', 0)
    redis.call('PUBLISH', ARGV[8], '1')
end
return {'ok'}
"""
)
#: CLAIM, then another store's work when the claim succeeds (`OnFirst`: its function's source follows
#: this one's; its KEYS follow CLAIM's 6, its ARGV CLAIM's 18): e.g. the pages_delivered metric, counted in
#: the claim's round trip instead of one of its own before the reply goes out.
CLAIM_THEN = (
    "local function claim(KEYS, ARGV)\n"
    + CLAIM
    + "end\n%s\nlocal result = claim(KEYS, ARGV)\n"
    + """if result[1] == 'ok' then
    local k, a = {}, {}
    for i = 7, #KEYS do k[#k + 1] = KEYS[i] end
    for i = 19, #ARGV do a[#a + 1] = ARGV[i] end
    %s(k, a)
end
return result
"""
)
#: Active mode: customer service is about to send a page of answer `id`, which makes
#: it the answer being read. The answer being read now, another one, keeps its rest — put back at the head
#: of the owed list from the page the user got to, with the late-answer heading there, as CLAIM does for a
#: 继续 — when the user has not moved on from it: `id` was asked before the user last got a page, so it
#: is no new question "instead of 继续" but one asked earlier whose answer came later. "Before" in Redis's
#: own order, not in time (the question's web process and the page's sender have clocks of their own): the
#: current hash counts the pages the user got (`got`), and an answer records that count when it is
#: created (`seen`). Not while that answer's own sender is still sending it (its next page makes it the
#: answer being read again). KEYS: the owed list, the current hash. ARGV: id, the answer key's prefix,
#: the suffixes of its pages, sent and sending keys, ttl, the customer-service quota. Returns 1 when kept.
KEEP_REST = (
    UNREAD_FUNCTION
    + KEEP_FUNCTION
    + """
local state = redis.call('HMGET', KEYS[2], 'answer', 'cursor', 'got')
if not state[1] or state[1] == ARGV[1] then return 0 end
local seen = redis.call('HGET', ARGV[2] .. ARGV[1], 'seen')
if not seen or tonumber(seen) >= tonumber(state[3] or '0') then return 0 end
local kept = keep(ARGV[2], ARGV[3], ARGV[4], ARGV[5], KEYS[1], state[1], tonumber(state[2] or '0'),
                  tonumber(ARGV[7]), ARGV[6])
return kept and 1 or 0
"""
)

#: A new answer: its fields, `seen` (the pages its user has got so far, the current hash's `got`: a page
#: that comes after it has a greater count, KEEP_REST), `model` (the model its user has picked with /model
#: now, '' for none: a /model sent while the question waits for a worker does not change it; the choice
#: is ModelChoices', read only), its place among the user's questions (`asking`, the last ASKING_WINDOW
#: seconds of them), and (passive) its place on the owed list. KEYS: the answer, the current hash, the owed
#: list, the user's model choice, the user's questions. ARGV: ttl, delivery, answer id, the question's
#: time, ASKING_WINDOW, field, value, ...
#: Its place among the user's questions is after every one already there — Redis's own order, not the
#: clock's: the question's time is its score unless a question already there has that time or a later one
#: (another web process's clock ahead of this one's, a clock stepped back, the same microsecond), when it
#: comes just after that one. Trimmed by this process's clock.
CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('HSET', KEYS[1], 'seen', redis.call('HGET', KEYS[2], 'got') or '0')
redis.call('HSET', KEYS[1], 'model', redis.call('GET', KEYS[4]) or '')
redis.call('EXPIRE', KEYS[1], ARGV[1])
local score = ARGV[4]
local last = redis.call('ZREVRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= tonumber(score) then score = tonumber(last[2]) + 0.001 end
redis.call('ZADD', KEYS[5], score, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[5], ARGV[5])
if ARGV[2] == 'passive' then
    redis.call('RPUSH', KEYS[3], ARGV[3])
    redis.call('EXPIRE', KEYS[3], ARGV[1])
end
return 1
"""

#: while another holder has the user lock, a peek or claim looks again this often (seconds), this long
BUSY_POLL = 0.005
BUSY_LIMIT = 5.0


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


#: The questions asked just before an answer's, in the order CREATE gave them (`asking`), the last ARGV[2]
#: of them: for each, its status, kind and question (false when its answer is gone). Nothing when the
#: answer has no place there (forgotten by a reset, or older than ASKING_WINDOW). KEYS: the user's
#: questions. ARGV: the answer id, how many to look at, the answer key's prefix.
ASKED_BEFORE = """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank or rank == 0 then return {} end
local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], math.max(rank - tonumber(ARGV[2]), 0), rank - 1)) do
    local a = redis.call('HMGET', ARGV[3] .. id, 'status', 'kind', 'question')
    found[#found + 1] = a[1]
    found[#found + 1] = a[2]
    found[#found + 1] = a[3]
end
return found
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
    #: for an answer the customer-service API stopped part-way (`AnswerStore.owe`): the page the next
    #: message delivers from the owed list (None for any other answer: its first page)
    owed_from: int | None = None
    #: the first page that reaches the user late, which carries the late-answer heading
    late_from: int = 0
    #: the model its user had picked with /model when asking ('' for none; None: an answer created before
    #: the choice was recorded with it)
    model: str | None = None

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

    @property
    def owed_page(self) -> int:
        """The page a message delivers when it takes this answer from the owed list."""
        return self.owed_from or 0

    def spent(self) -> bool:
        """Owed part-way from a page past its end: nothing is left to deliver from the owed list."""
        return self.owed_from is not None and not self.more_after(self.owed_from - 1)

    def eligible_for(self, push_key: str, now: float) -> bool:
        """May this push deliver the answer? Its own push always; others once it is released."""
        return self.owner == push_key or self.reserved_until < now


@dataclass(frozen=True)
class Target:
    """The next thing a user should receive: page `page` of answer `answer`."""

    answer: Answer
    page: int
    from_owed: bool
    #: the answer is the one being read (the current answer): its page continues what the user just read
    reading: bool = False
    #: the answer being read, another one, has pages the user has not got, which follow this page: a 继续
    #: that takes this answer from the owed list and makes it the answer being read puts them back on the
    #: owed list (CLAIM); after an answer owed part-way they are read as the answer being read
    rest_after: bool = False


@dataclass(frozen=True)
class Peek:
    """What a push may deliver now (`AnswerStore.peek`): its reply when it already has one; else the next
    target, if any, whether its page is ready, and that page's text (None: there is no such page)."""

    reply: str | None = None
    target: Target | None = None
    ready: bool = False
    page: str | None = None
    restarts: int = 0
    #: peeked for a 继续 (include_current): its claim may put the answer being read back on the owed list
    fetch: bool = False


@dataclass(frozen=True)
class Claimed:
    """The outcome of `AnswerStore.claim`: the push's reply, and whether this claim delivered it (False:
    another delivery of the same push answered first). None instead: the target changed; peek again."""

    reply: str
    delivered: bool


class AnswerStore:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.notices = ReadyNotices(client)
        self._guarded_write = client.register_script(GUARDED_WRITE)
        self._release = client.register_script(RELEASE_IF_OURS)
        self._peek = client.register_script(PEEK)
        self._claim = client.register_script(CLAIM)
        self._create = client.register_script(CREATE)
        self._asked_before = client.register_script(ASKED_BEFORE)
        self._claim_then: dict[str, Script] = {}  # by the OnFirst function's source

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
        answer_id, now = uuid.uuid4().hex, time.time()
        fields: dict[FieldT, EncodableT] = {
            "openid": openid,
            "question": question,
            "status": "queued",
            "owner": owner,
            "reserved_until": now + reserved_for,
            "delivery": delivery,
            "created": now,
            "kind": kind,
            "media_id": media_id,
        }
        names = [keys.answer(answer_id), keys.current(openid), keys.owed(openid), keys.user_model(openid)]
        names.append(keys.asking(openid))
        args: list[EncodableT] = [self.ttl, delivery, answer_id, now, keys.ASKING_WINDOW]
        args += [item for pair in fields.items() for item in pair]
        self._create(keys=names, args=args)
        return answer_id

    def asked_before(self, answer: Answer, kinds: tuple[str, ...], limit: int) -> list[str]:
        """The questions (of these kinds) its user asked before `answer` whose answers are not finished yet,
        oldest first, the last `limit` of them: a question sent in a burst is answered while the one before
        it still is, so the history has neither yet. "Before" in the order Redis created them (CREATE), not
        by the creators' clocks; only the last ASKED_SCAN questions before it are looked at, in one round
        trip, however many the user has pending."""
        args: list[EncodableT] = [answer.id, ASKED_SCAN, keys.answer("")]
        fields = self._asked_before(keys=[keys.asking(answer.openid)], args=args)
        found = [
            str(question)
            for status, kind, question in zip(fields[0::3], fields[1::3], fields[2::3], strict=True)
            if status is not None and status not in TERMINAL and kind in kinds and question
        ]
        return found[-limit:]

    def forget_asked_in(self, pipe: Pipeline, openid: str) -> None:
        """A reset, queued in the caller's pipeline: the questions asked before it are no context for the
        next one (`asked_before`); their answers still come."""
        pipe.delete(keys.asking(openid))

    def get(self, answer_id: str) -> Answer | None:
        pipe = self.redis.pipeline()
        pipe.hgetall(keys.answer(answer_id))
        pipe.llen(keys.answer_pages(answer_id))
        fields, page_count = pipe.execute()
        if not fields:
            return None
        return _answer_of(answer_id, fields, int(page_count))

    def page_count(self, answer_id: str) -> int:
        return int(self.redis.llen(keys.answer_pages(answer_id)))

    def page(self, answer: Answer, index: int) -> str | None:
        """Text of page `index`; past the last page of a failed answer, its error note (none when its
        last page carries it)."""
        if index < answer.page_count:
            text = self.redis.lindex(keys.answer_pages(answer.id), index)
            return None if text is None else str(text)
        if answer.status == "failed" and index == answer.page_count and answer.error:
            return answer.error
        return None

    def set_status(self, answer: Answer, status: str, error: str = "") -> None:
        """A status that makes nothing deliverable (`running`): no notice, so the replies waiting for
        the answer are not woken to look for a page that is not there (a look costs each of them a
        round trip). The writes that do (pages, the final status) notify in their own script."""
        self.redis.hset(keys.answer(answer.id), mapping={"status": status, "error": error})

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
        channel = keys.ready_channel(answer.openid)
        args: list[EncodableT] = [lease, self.ttl, status, error, channel, *pages]
        lease_key, pages_key = keys.answer_lease(answer.id), keys.answer_pages(answer.id)
        if not self._guarded_write(keys=[lease_key, pages_key, keys.answer(answer.id)], args=args):
            raise LeaseLost(f"answer {answer.id}: its lease is gone (another run took it, or it expired)")

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

    def renew_leases(self, leases: list[tuple[str, str]], lease_ms: int) -> list[bool]:
        """Renew runs' leases ((answer id, token) each) in one round trip; False for one no longer theirs."""
        pipe = self.redis.pipeline(transaction=False)
        for answer_id, token in leases:
            pipe.eval(RENEW_IF_OURS, 1, keys.answer_lease(answer_id), token, lease_ms)  # no SCRIPT EXISTS
        return [bool(renewed) for renewed in pipe.execute()]

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
        name, ttl = keys.user_lock(openid), keys.USER_LOCK_TTL
        lock = self.redis.lock(name, timeout=ttl, blocking_timeout=BUSY_LIMIT)
        if not lock.acquire():
            raise TimeoutError(f"user lock for {openid} is busy")
        try:
            yield
        finally:
            with suppress(redis.exceptions.LockError):  # expired: the work under it was short
                lock.release()

    def peek(self, openid: str, push_key: str, *, include_current: bool) -> Peek:
        """What push `push_key` may deliver now, in one round trip (`next_target` and `page`, and the
        push's reply), without the user lock: a holder of the lock (the active sender) is waited for."""
        names = [keys.message(push_key), keys.owed(openid), keys.current(openid), keys.user_lock(openid)]
        args: list[EncodableT] = [push_key, time.time(), int(include_current), OWED_SCAN, ABANDONED_AFTER]
        args += [texts.LLM_TIMEOUT, keys.answer(""), *_SUFFIXES]
        found = self._while_busy(lambda: self._peek(keys=names, args=args))
        if found[0] == "reply":
            return Peek(reply=str(found[1]))
        if found[0] == "none":
            return Peek()
        answer_id, index, owed, count, page, reading, rest_after = (
            str(found[1]),
            int(found[2]),
            found[3] == 1,
            int(found[4]),
            found[5],
            found[6] == 1,
            found[7] == 1,
        )
        fields = dict(zip(found[8::2], found[9::2], strict=True))
        answer = _answer_of(answer_id, fields, count)
        target = Target(answer, index, from_owed=owed, reading=reading, rest_after=rest_after)
        text = None if page is None else str(page)
        ready = found[0] == "ready"
        return Peek(target=target, ready=ready, page=text, restarts=answer.restarts, fetch=include_current)

    def claim(
        self,
        push_key: str,
        peeked: Peek,
        text: str,
        *,
        release: str = "",
        then: OnFirst | None = None,
        asked: bool = False,
        quota: int = 5,
    ) -> Claimed | None:
        """Deliver the page `peeked` found as `text`, the reply of push `push_key`, if it is still this
        push's to deliver: the reply recorded and the page passed, atomically (one of any number of
        concurrent claims of a page wins; None for the others: peek again). `release`: the push's own
        answer, released for a later message when the push delivers another one. `then`: another
        store's work, done in the same step when this claim delivers the page. A 继续 (`peeked.fetch`)
        that makes an owed answer the one being read puts the answer being read back on the owed list
        when it has pages the user has not got (`Target.rest_after`, checked again here). `asked`: the push
        is a question (`release`, or else the answer claimed, is its own answer): asked before the user
        got the last page of the answer being read, it keeps that answer's rest (KEEP_FUNCTION). `quota`:
        the customer-service quota (an active answer's own sender sends that many pages)."""
        target = peeked.target
        assert target is not None
        answer = target.answer
        names = [keys.message(push_key), keys.owed(answer.openid), keys.current(answer.openid)]
        names += [keys.user_lock(answer.openid), keys.answer(answer.id), keys.answer(release or answer.id)]
        args: list[EncodableT] = [text, answer.id, target.page, int(target.from_owed), peeked.restarts]
        args += [self.ttl, int(bool(release)), keys.ready_channel(answer.openid)]
        args += [
            keys.answer_sent(answer.id),
            keys.answer_sending(answer.id),
            int(answer.more_after(target.page)),
            int(target.rest_after) if peeked.fetch else "",
            keys.answer(""),
            *_SUFFIXES_UNREAD,
            "1" if asked else "",
            quota,
        ]
        script = self._claim
        if then is not None:
            script = self._claim_script(then)
            names, args = names + then.keys, args + then.args
        found = self._while_busy(lambda: script(keys=names, args=args))
        if found[0] == "ok":
            return Claimed(text, delivered=True)
        if found[0] == "reply":
            return Claimed(str(found[1]), delivered=False)
        return None

    def _claim_script(self, then: OnFirst) -> Script:
        script = self._claim_then.get(then.function)
        if script is None:
            source = CLAIM_THEN % (then.function, then.name)
            script = self._claim_then[then.function] = self.redis.register_script(source)
        return script

    @staticmethod
    def _while_busy(run: Callable[[], list[Any]]) -> list[Any]:
        """Run a claim script again while the user lock is held (as waiting for the lock did)."""
        deadline = time.monotonic() + BUSY_LIMIT
        while (found := run())[0] == "busy":
            if time.monotonic() >= deadline:
                raise TimeoutError("the user lock is busy")
            time.sleep(BUSY_POLL)
        return found

    def next_target(self, openid: str, push_key: str, *, include_current: bool) -> Target | None:
        """The oldest *ready* owed answer this push may deliver, else the oldest one to wait for, else
        (for 继续) the current answer's next page. A ready answer never waits behind a slow one.
        (For an owed answer `reading` and `rest_after` are PEEK's alone: False here.)"""
        eligible = self._eligible_owed(openid, push_key)
        ready = [answer for answer in eligible if answer.page_ready(answer.owed_page)]
        if ready or eligible:
            first = (ready or eligible)[0]
            return Target(first, first.owed_page, from_owed=True)
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
                answer = self._fail_if_abandoned(answer, now)
                if answer.spent():  # owed part-way, and read to its end
                    self.redis.lrem(keys.owed(openid), 0, answer_id)
                else:
                    found.append(answer)
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
        return Target(answer, cursor, from_owed=False, reading=True)

    def mark_delivered(self, target: Target, pages: int = 1, *, keep_rest: int | None = None) -> None:
        """Advance past `pages` pages of the target (call under the user lock). `keep_rest` (active mode,
        the customer-service quota): first, in the same round trip, the answer being read keeps its rest
        when the user has not moved on from it (KEEP_REST), before the target becomes the one being read."""
        answer = target.answer
        cursor = max(target.page + pages, self.cursor(answer))  # never back: a page is read once
        pipe = self.redis.pipeline()
        if keep_rest is not None:  # EVAL, not a Script: in a pipeline that costs a SCRIPT EXISTS round trip
            names = [keys.owed(answer.openid), keys.current(answer.openid)]
            pipe.eval(
                KEEP_REST, 2, *names, answer.id, keys.answer(""), *_SUFFIXES_UNREAD, self.ttl, keep_rest
            )
        if target.from_owed:
            pipe.lrem(keys.owed(answer.openid), 0, answer.id)
        pipe.hset(keys.current(answer.openid), mapping={"answer": answer.id, "cursor": cursor})
        pipe.hincrby(keys.current(answer.openid), "got", 1)  # KEEP_REST: a page the user got
        pipe.expire(keys.current(answer.openid), self.ttl)
        pipe.execute()

    def cursor(self, answer: Answer) -> int:
        """Pages of `answer` the user has read as the answer being read: its cursor while it is, and what
        CLAIM recorded on the answer (`read`), which stays when another answer becomes the one being read
        (pages 继续 read while customer service was still trying an earlier one are not sent again)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.current(answer.openid))
        pipe.hget(keys.answer(answer.id), "read")
        state, read = pipe.execute()
        current = int(state.get("cursor", 0)) if state.get("answer") == answer.id else 0
        return max(current, int(read or 0))

    def owe(self, answer_id: str, openid: str, *, start: int) -> None:
        """Put an answer the customer-service API stopped at page `start` (back) on the user's owed list,
        free for the next message to fetch: from page `start`, with the late-answer heading. It stays
        owed, page after page, until the page with nothing after it (CLAIM): the user, who may not have
        been told that more follows, gets the rest on their next messages and 继续, in order, whatever
        they ask meanwhile."""
        pipe = self.redis.pipeline()
        fields: dict[FieldT, EncodableT] = {
            "reserved_until": 0,
            "delivery": "passive",
            "owed_from": start,
            "late_from": start,
        }
        pipe.hset(keys.answer(answer_id), mapping=fields)
        pipe.rpush(keys.owed(openid), answer_id)
        pipe.expire(keys.owed(openid), self.ttl)
        pipe.execute()
        self.notify(openid)


def _answer_of(answer_id: str, fields: dict[str, str], page_count: int) -> Answer:
    return Answer(
        id=answer_id,
        openid=fields.get("openid", ""),
        question=fields.get("question", ""),
        status=fields.get("status", "queued"),
        error=fields.get("error", ""),
        owner=fields.get("owner", ""),
        reserved_until=float(fields.get("reserved_until", 0)),
        delivery=fields.get("delivery", "passive"),
        page_count=page_count,
        restarts=int(fields.get("restarts", 0)),
        kind=fields.get("kind", "text"),
        media_id=fields.get("media_id", ""),
        created=float(fields.get("created", 0)),
        owed_from=int(fields["owed_from"]) if "owed_from" in fields else None,
        late_from=int(fields.get("late_from", 0)),
        model=fields.get("model"),
    )


def _suffix(key_of: Callable[[str], str]) -> str:
    """What a key of an answer adds to the answer's own key (`:pages`, …), for the scripts that build
    the keys of the answers they find."""
    base, key = keys.answer("0"), key_of("0")
    assert key.startswith(base), key
    return key[len(base) :]


#: what the keys of an answer add to its own key, in the order PEEK takes them
_SUFFIXES = [
    _suffix(key_of)
    for key_of in (keys.answer_pages, keys.answer_lease, keys.answer_sent, keys.answer_sending)
]
#: the pages', sent and sending keys' suffixes, for UNREAD_FUNCTION in CLAIM
_SUFFIXES_UNREAD = [_SUFFIXES[0], _SUFFIXES[2], _SUFFIXES[3]]
