"""One thread keeps every lease of a job process alive (bot/answering/generation.py LeaseRenewer): all
of them in one round trip a tick, a lease taken over by another run is let go, and the thread ends when
no run holds a lease."""

from __future__ import annotations

import redis

from bot.answering.generation import LeaseRenewer
from bot.store.answers import AnswerStore
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
