"""The atomic claim (AnswerStore.peek + claim): of any number of deliveries that found the same page,
exactly one delivers it; a claim fails when anything it looked at changed since, and never waits for
a lock. Deterministic: interleavings are played in order, and real threads are only counted."""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

import redis

from bot.store import keys
from bot.store.answers import AnswerStore, Peek
from bot.store.metrics import Metrics
from bot.store.pushes import PushLog

USER = "user-1"


def answered(store: AnswerStore, pages: list[str], *, owner: str = "asker", released: bool = True) -> str:
    """A finished answer of USER, owed to them; released: any of their pushes may deliver it."""
    answer_id = store.create(USER, "q", owner=owner, reserved_for=0 if released else 60, delivery="passive")
    answer = store.get(answer_id)
    assert answer is not None
    lease = store.take_lease(answer_id, 10_000)
    assert lease is not None
    store.finish(answer, pages, "done", lease=lease)
    return answer_id


def test_of_many_deliveries_that_found_the_same_page_exactly_one_claims_it(redis_client: redis.Redis) -> None:
    store = AnswerStore(redis_client, ttl=3600)
    answer_id = answered(store, ["the answer"])
    pushes = [f"push-{n}" for n in range(8)]
    found = [store.peek(USER, push, include_current=False) for push in pushes]
    assert all(f.target is not None and f.target.answer.id == answer_id and f.ready for f in found)
    claims = [store.claim(push, f, f"reply of {push}") for push, f in zip(pushes, found, strict=True)]
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].delivered and winners[0].reply == "reply of push-0"
    # the others look again: nothing is owed any more
    assert all(store.peek(USER, push, include_current=False).target is None for push in pushes[1:])
    log = PushLog(redis_client)
    assert [log.reply(push) for push in pushes] == ["reply of push-0"] + [None] * 7


def test_the_delivery_is_counted_in_the_claims_own_step_once(redis_client: redis.Redis) -> None:
    """The pages_delivered metric rides on the claim (no round trip of its own before the reply): counted
    by the claim that delivers, not by those that lost, nor by a push that already had its reply."""
    store = AnswerStore(redis_client, ttl=3600)
    metrics = Metrics(redis_client, ZoneInfo("UTC"))
    answered(store, ["the answer"])
    pushes = [f"push-{n}" for n in range(4)]
    found = [store.peek(USER, push, include_current=False) for push in pushes]
    then = metrics.on_inc("pages_delivered", path="attempt_1")
    claims = [store.claim(push, f, "reply", then=then) for push, f in zip(pushes, found, strict=True)]
    assert [c is not None for c in claims] == [True, False, False, False]
    again = store.claim("push-0", found[0], "reply", then=then)  # the push's reply, recorded before
    assert again is not None and not again.delivered
    assert metrics.counter("pages_delivered") == {'{"path": "attempt_1"}': 1}
    assert metrics.counter("pages_delivered", today=True) == {'{"path": "attempt_1"}': 1}


def test_concurrent_claims_from_many_threads_deliver_the_page_once(redis_client: redis.Redis) -> None:
    store = AnswerStore(redis_client, ttl=3600)
    answered(store, ["the answer"])
    start = threading.Barrier(16)
    delivered: list[str] = []
    lock = threading.Lock()

    def deliver(push: str) -> None:
        start.wait(timeout=30)
        for _ in range(20):  # as PassiveDelivery: look, claim, look again when the claim failed
            found = store.peek(USER, push, include_current=False)
            if found.reply is not None or found.target is None:
                return
            claimed = store.claim(push, found, f"reply of {push}")
            if claimed is not None:
                if claimed.delivered:
                    with lock:
                        delivered.append(push)
                return

    threads = [threading.Thread(target=deliver, args=(f"push-{n}",)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(delivered) == 1
    assert store.peek(USER, "later", include_current=False).target is None


def test_two_deliveries_of_one_push_give_one_reply(redis_client: redis.Redis) -> None:
    """WeChat's retry found the same page as the attempt still waiting: the second claim returns the
    reply the first one recorded, and the page is passed once."""
    store = AnswerStore(redis_client, ttl=3600)
    answered(store, ["page 1", "page 2"], owner="push-1", released=False)
    first = store.peek(USER, "push-1", include_current=False)
    again = store.peek(USER, "push-1", include_current=False)
    one = store.claim("push-1", first, "page 1 …")
    two = store.claim("push-1", again, "page 1 (other text)")
    assert one is not None and one.delivered
    assert two is not None and not two.delivered and two.reply == "page 1 …"
    assert PushLog(redis_client).reply("push-1") == "page 1 …"
    later = store.peek(USER, "push-1", include_current=False)
    assert later.reply == "page 1 …"  # the push has its reply: no other page goes out on it
    fetch = store.peek(USER, "push-2", include_current=True)  # 继续 reads page 2, not page 1 again
    assert fetch.target is not None and fetch.target.page == 1 and fetch.page == "page 2"


def test_a_claim_fails_when_a_lock_holder_changed_the_page_meanwhile(redis_client: redis.Redis) -> None:
    """The active sender works under the user lock: a page it passed while a delivery was between its
    look and its claim is not given a second time."""
    store = AnswerStore(redis_client, ttl=3600)
    answered(store, ["page 1", "page 2", "page 3"])
    first = store.peek(USER, "push-1", include_current=False)
    assert store.claim("push-1", first, "page 1") is not None
    found = store.peek(USER, "push-2", include_current=True)
    assert found.target is not None and found.target.page == 1
    with store.user_lock(USER):  # e.g. a customer-service send of page 2
        store.mark_delivered(found.target)
    assert store.claim("push-2", found, "page 2") is None
    again = store.peek(USER, "push-2", include_current=True)
    assert again.target is not None and again.target.page == 2 and again.page == "page 3"


def test_a_claim_fails_when_the_answer_was_restarted_meanwhile(redis_client: redis.Redis) -> None:
    """A killed worker's answer is regenerated (its unread pages dropped): a page peeked before that is
    not delivered."""
    store = AnswerStore(redis_client, ttl=3600)
    answer_id = answered(store, ["old page"])
    found = store.peek(USER, "push-1", include_current=False)
    answer = store.get(answer_id)
    assert answer is not None
    store.restart(answer, keep_pages=0)
    assert store.claim("push-1", found, "old page") is None
    assert store.peek(USER, "push-1", include_current=False).ready is False  # running again, no page yet


def test_releasing_the_pushs_own_answer_goes_with_the_claim(redis_client: redis.Redis) -> None:
    """A push that delivers an earlier late answer releases its own (a later message may fetch it)."""
    store = AnswerStore(redis_client, ttl=3600)
    answered(store, ["late answer"])
    own = store.create(USER, "new question", owner="push-2", reserved_for=60, delivery="passive")
    found = store.peek(USER, "push-2", include_current=False)
    assert found.target is not None and found.target.answer.id != own
    assert store.claim("push-2", found, "late answer + note", release=own) is not None
    mine = store.get(own)
    assert mine is not None and mine.reserved_until == 0


def test_peek_picks_what_next_target_picks(redis_client: redis.Redis) -> None:
    """The script and the Python reading agree: the oldest *ready* owed answer first, else the oldest
    one to wait for; expired ids leave the owed list."""
    store = AnswerStore(redis_client, ttl=3600)
    slow = store.create(USER, "slow", owner="x", reserved_for=0, delivery="passive")
    redis_client.rpush(f"wxbot:user:{USER}:owed", "expired-id")
    ready = answered(store, ["ready"])
    found = store.peek(USER, "push-1", include_current=False)
    target = store.next_target(USER, "push-1", include_current=False)
    assert found.target is not None and target is not None
    assert found.target.answer.id == target.answer.id == ready and found.page == "ready"
    assert "expired-id" not in redis_client.lrange(f"wxbot:user:{USER}:owed", 0, -1)
    assert store.claim("push-1", found, "ready") is not None
    waiting = store.peek(USER, "push-2", include_current=False)
    assert waiting.target is not None and waiting.target.answer.id == slow and not waiting.ready
    assert waiting == Peek(target=waiting.target, ready=False, page=None, restarts=0)


def test_an_answer_owed_part_way_is_claimed_page_by_page_from_its_start(redis_client: redis.Redis) -> None:
    """The customer-service API stopped an answer at page 2 (`owe(start=1)`): messages take its pages from
    there, one each, two that found the same page never both get it; the answer being read (another
    one, sent through customer service meanwhile) stays the current answer, and the owed one leaves the
    list after its last page."""
    store = AnswerStore(redis_client, ttl=3600)
    answer_id = answered(store, ["page 1", "page 2", "page 3"], owner="asker", released=False)
    redis_client.lrem(keys.owed(USER), 0, answer_id)  # an active answer is not owed when asked
    other = answered(store, ["other"])
    taken = store.peek(USER, "push-0", include_current=False)
    assert taken.target is not None and taken.target.answer.id == other
    assert store.claim("push-0", taken, "other") is not None  # the answer being read now
    store.owe(answer_id, USER, start=1)
    found = [store.peek(USER, push, include_current=True) for push in ("push-1", "push-2")]
    for peeked in found:
        assert peeked.target is not None and peeked.target.answer.id == answer_id
        assert (peeked.target.page, peeked.target.from_owed, peeked.page) == (1, True, "page 2")
    target = store.next_target(USER, "push-1", include_current=True)
    assert target is not None and (target.answer.id, target.page) == (answer_id, 1)
    assert store.claim("push-1", found[0], "page 2") is not None
    assert store.claim("push-2", found[1], "page 2") is None  # taken meanwhile: look again
    again = store.peek(USER, "push-2", include_current=True)
    assert again.target is not None and (again.target.page, again.page) == (2, "page 3")
    assert store.claim("push-2", again, "page 3") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == []
    assert redis_client.hget(keys.current(USER), "answer") == other
    assert store.peek(USER, "push-3", include_current=True).page is None  # `other` is read to its end


# --- a 继续 that takes an owed answer while the answer being read has pages left ----------------------
def reading(
    store: AnswerStore, pages: list[str], *, status: str = "done", error: str = "", asker: str = "asker"
) -> str:
    """An answer of USER whose first page they have read (the answer being read, cursor 1)."""
    answer_id = store.create(USER, "long", owner=asker, reserved_for=0, delivery="passive")
    answer = store.get(answer_id)
    lease = store.take_lease(answer_id, 10_000)
    assert answer is not None and lease is not None
    if status in ("done", "failed"):
        store.finish(answer, pages, status, error, lease=lease)
    else:
        store.add_pages(answer, pages, lease=lease)
    found = store.peek(USER, asker, include_current=False)
    assert found.target is not None and found.target.answer.id == answer_id
    assert store.claim(asker, found, pages[0]) is not None
    assert store.redis.hmget(keys.current(USER), "answer", "cursor") == [answer_id, "1"]
    return answer_id


def test_continue_that_takes_an_owed_answer_puts_the_rest_being_read_back_on_the_owed_list(
    redis_client: redis.Redis,
) -> None:
    """The user reads page 1 of `long`, and a late answer is owed: 继续 takes the late one (it becomes
    the answer being read), and `long` goes back on the owed list from page 2, with the late heading
    there; the next 继续 reads it, page by page, then nothing is left."""
    store = AnswerStore(redis_client, ttl=3600)
    long = reading(store, ["page 1", "page 2", "page 3"])
    late = answered(store, ["late answer"])
    found = store.peek(USER, "push-1", include_current=True)
    assert found.target is not None and found.target.answer.id == late and found.target.rest_after
    assert store.claim("push-1", found, "late answer …") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == [long]
    assert redis_client.hget(keys.current(USER), "answer") == late
    owed = store.get(long)
    assert owed is not None and (owed.owed_from, owed.late_from, owed.reserved_until) == (1, 1, 0)
    for push, page in (("push-2", "page 2"), ("push-3", "page 3")):
        again = store.peek(USER, push, include_current=True)
        assert again.target is not None and again.target.answer.id == long and again.target.from_owed
        assert again.page == page and not again.target.rest_after
        assert store.claim(push, again, page) is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == []
    assert store.peek(USER, "push-4", include_current=True).page is None  # `late` is read to its end


def test_a_new_question_that_takes_an_owed_answer_leaves_the_rest_being_read(
    redis_client: redis.Redis,
) -> None:
    """A question (not 继续) that gets a late answer: its asker moved on, and the rest of the answer
    they were reading is not forced on them later."""
    store = AnswerStore(redis_client, ttl=3600)
    reading(store, ["page 1", "page 2"])
    late = answered(store, ["late answer"])
    found = store.peek(USER, "question", include_current=False)
    assert found.target is not None and found.target.answer.id == late and not found.target.rest_after
    assert store.claim("question", found, "late answer + note") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == []
    assert redis_client.hget(keys.current(USER), "answer") == late


def test_the_rest_of_an_answer_still_being_written_or_its_failure_note_is_kept_too(
    redis_client: redis.Redis,
) -> None:
    """All pages read, but more is being written (or a failure note follows): that is kept as well; an
    answer read to its end is not."""
    store = AnswerStore(redis_client, ttl=3600)
    cases = (("running", "", True), ("failed", "it failed", True), ("done", "", False))
    for n, (status, error, kept) in enumerate(cases):
        redis_client.delete(keys.owed(USER), keys.current(USER))
        long = reading(store, ["page 1"], status=status, error=error, asker=f"asker-{n}")
        answered(store, ["late answer"])
        found = store.peek(USER, f"push-{n}", include_current=True)
        assert found.target is not None and found.target.rest_after is kept
        assert store.claim(f"push-{n}", found, "late answer") is not None
        assert redis_client.lrange(keys.owed(USER), 0, -1) == ([long] if kept else [])
        if status == "failed":  # what is kept of it is its note
            note = store.peek(USER, "push-note", include_current=True)
            assert note.target is not None and note.target.answer.id == long and note.page == "it failed"


def test_two_continues_that_took_the_same_owed_answer_keep_the_rest_once(redis_client: redis.Redis) -> None:
    """Two 继续 at once found the late answer: one takes it (and keeps the rest being read once), the
    other, looking again, reads that rest's next page."""
    store = AnswerStore(redis_client, ttl=3600)
    long = reading(store, ["page 1", "page 2", "page 3"])
    late = answered(store, ["late answer"])
    found = [store.peek(USER, push, include_current=True) for push in ("push-1", "push-2")]
    assert all(f.target is not None and f.target.answer.id == late and f.target.rest_after for f in found)
    assert store.claim("push-1", found[0], "late answer") is not None
    assert store.claim("push-2", found[1], "late answer") is None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == [long]
    again = store.peek(USER, "push-2", include_current=True)
    assert again.target is not None and (again.target.answer.id, again.page) == (long, "page 2")
    assert store.claim("push-2", again, "page 2") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == [long]  # page 3 follows


def test_a_claim_that_would_keep_a_rest_read_meanwhile_looks_again(redis_client: redis.Redis) -> None:
    """A 继续 peeked a rest to keep, and another 继续 read that rest before its claim: the claim fails
    (its reply would say that more follows), and the next look keeps nothing."""
    store = AnswerStore(redis_client, ttl=3600)
    reading(store, ["page 1", "page 2"])
    ahead = store.peek(USER, "push-2", include_current=True)  # nothing owed yet: the current page
    assert ahead.target is not None and ahead.page == "page 2" and not ahead.target.from_owed
    late = answered(store, ["late answer"])
    found = store.peek(USER, "push-1", include_current=True)
    assert found.target is not None and found.target.answer.id == late and found.target.rest_after
    assert store.claim("push-2", ahead, "page 2") is not None  # the rest is read meanwhile
    assert store.claim("push-1", found, "late answer + more hint") is None
    again = store.peek(USER, "push-1", include_current=True)
    assert again.target is not None and again.target.answer.id == late and not again.target.rest_after
    assert store.claim("push-1", again, "late answer") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == []


def test_after_an_answer_owed_part_way_the_rest_being_read_follows_as_it_is(
    redis_client: redis.Redis,
) -> None:
    """An answer owed from a page (`owe`) is read before the rest of the answer being read, which stays the
    answer being read (nothing goes back on the owed list); its last page says that more follows."""
    store = AnswerStore(redis_client, ttl=3600)
    stopped = answered(store, ["cs 1", "cs 2"], owner="asker-cs", released=False)
    redis_client.lrem(keys.owed(USER), 0, stopped)
    long = reading(store, ["page 1", "page 2"])
    store.owe(stopped, USER, start=1)
    found = store.peek(USER, "push-1", include_current=True)
    assert found.target is not None and (found.target.answer.id, found.page) == (stopped, "cs 2")
    assert found.target.rest_after and not found.target.answer.more_after(found.target.page)
    assert store.claim("push-1", found, "cs 2 + more hint") is not None
    assert redis_client.lrange(keys.owed(USER), 0, -1) == []
    assert redis_client.hmget(keys.current(USER), "answer", "cursor") == [long, "1"]
    again = store.peek(USER, "push-2", include_current=True)
    assert again.target is not None and (again.target.answer.id, again.page) == (long, "page 2")
