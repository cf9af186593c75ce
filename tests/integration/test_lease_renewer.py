"""One thread keeps every lease of a job process alive (bot/answering/generation.py LeaseRenewer): all
of them in one round trip a tick, a lease taken over by another run is let go, and the thread ends when
no run holds a lease. And the user lock a killed holder leaves behind expires before anyone gives up."""

from __future__ import annotations

import redis

from bot.answering.generation import LeaseRenewer
from bot.store.answers import AnswerStore
from bot.store.keys import USER_LOCK_TTL
from testing.patience import wait_for

LEASE_MS = 1500  # a tick every 500 ms


def test_every_lease_renewed_in_one_round_trip_and_the_thread_ends_when_none_is_held(
    redis_client: redis.Redis,
) -> None:
    store = AnswerStore(redis_client, ttl=60)
    calls: list[list[tuple[str, str]]] = []
    results: list[list[bool]] = []
    renew = store.renew_leases

    def spy(leases: list[tuple[str, str]], lease_ms: int) -> list[bool]:
        calls.append(list(leases))
        results.append(renew(leases, lease_ms))
        return results[-1]

    store.renew_leases = spy  # type: ignore[method-assign]
    renewer = LeaseRenewer(store, LEASE_MS)
    first, second = store.take_lease("a1", LEASE_MS), store.take_lease("a2", LEASE_MS)
    assert first is not None and second is not None
    with renewer.holding("a1", first), renewer.holding("a2", second):
        wait_for(lambda: len(results) >= 3, what="three ticks")  # 1.5 s: the leases' own length
        assert all(sorted(call) == [("a1", first), ("a2", second)] for call in calls)
        assert results[:3] == [[True, True]] * 3  # each tick found both still theirs, and renewed them
        redis_client.set("wxbot:ans:a2:lease", "another-run")  # another run took a2 over
        ticks = len(calls)
        wait_for(lambda: len(results) >= ticks + 2, what="two more ticks")
        assert calls[-1] == [("a1", first)] and results[-1] == [True]  # a2 is let go, never taken back
        assert redis_client.get("wxbot:ans:a2:lease") == "another-run"
    wait_for(lambda: renewer._thread is None, what="the renewer's end")
    ended = len(calls)
    with renewer.holding("a1", first):  # a new run starts it again
        wait_for(lambda: len(calls) > ended, what="a tick of the new thread")
    wait_for(lambda: renewer._thread is None, what="the renewer's end")


def test_a_user_lock_left_by_a_killed_holder_expires_before_its_waiters_give_up(
    redis_client: redis.Redis,
) -> None:
    """A worker killed under the user lock (active mode, between sending a page and recording it) leaves
    the lock to expire: the next run waits for it instead of failing the answer."""
    store = AnswerStore(redis_client, ttl=60)
    # as a killed holder leaves it: its whole time to live ahead
    redis_client.set("wxbot:user:user-1:lock", "a-killed-worker", px=USER_LOCK_TTL * 1000)
    with store.user_lock("user-1"):  # TimeoutError if the dead holder's lock outlasted the wait
        assert redis_client.get("wxbot:user:user-1:lock") != "a-killed-worker"
