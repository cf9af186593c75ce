"""The fake-time machinery of the scripted delivery tests: clock, tasks, waiter, scripted LLM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bot.delivery.waiter import RECHECK_SECONDS
from bot.llm import ChatBackend, LLMError
from bot.ops.redis_server import RedisServer
from bot.store import keys
from testing.chat_backend import ScriptedBackend
from testing.clock import FakeClock, TaskFailed
from testing.waiter import FakeWaiter, ReadyBus


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock(wall_start=1_700_000_000.0)
    yield fake
    fake.close()


def test_tasks_run_in_fake_time_order_and_in_scheduling_order_at_one_instant(clock: FakeClock) -> None:
    seen: list[tuple[str, float]] = []

    def sleeper(name: str, seconds: float) -> None:
        clock.sleep(seconds)
        seen.append((name, clock.now))

    clock.spawn(lambda: sleeper("c", 3.0))
    clock.spawn(lambda: sleeper("a", 1.0))
    clock.spawn(lambda: sleeper("b", 3.0))
    clock.spawn(lambda: sleeper("d", 2.0), at=1.5)
    clock.run_all()
    assert seen == [("a", 1.0), ("c", 3.0), ("b", 3.0), ("d", 3.5)]
    assert (clock.monotonic(), clock.time()) == (3.5, 1_700_000_003.5)


def test_the_tests_thread_moves_the_clock_and_runs_only_what_is_due(clock: FakeClock) -> None:
    ran: list[float] = []
    clock.spawn(lambda: ran.append(clock.now), at=5.0)
    clock.spawn(lambda: ran.append(clock.now), at=6.0)
    clock.advance_to(5.5)
    assert (ran, clock.now) == ([5.0], 5.5)
    clock.sleep(1.0)  # in the test's thread, sleeping is letting time pass
    assert (ran, clock.now) == ([5.0, 6.0], 6.5)


def test_fake_instants_are_on_a_grid(clock: FakeClock) -> None:
    clock.spawn(lambda: clock.sleep(4.2), at=0.1)
    clock.run_all()
    assert clock.now == 4.3


def test_a_poke_wakes_a_pokeable_task_early_and_no_other(clock: FakeClock) -> None:
    woke: dict[str, tuple[float, bool]] = {}

    def waiting(name: str, pokeable: bool) -> None:
        poked = clock.suspend(10.0, pokeable=pokeable)
        woke[name] = (clock.now, poked)

    listener = clock.spawn(lambda: waiting("listener", True))
    sleeper = clock.spawn(lambda: waiting("sleeper", False))

    def poke_both() -> None:
        clock.poke(listener)
        clock.poke(sleeper)

    clock.spawn(poke_both, at=3.0)
    clock.run_all()
    assert woke == {"listener": (3.0, True), "sleeper": (10.0, False)}


def test_run_until_stops_when_the_condition_holds_or_at_the_limit(clock: FakeClock) -> None:
    done: list[float] = []
    clock.spawn(lambda: done.append(clock.now), at=2.0)
    clock.spawn(lambda: done.append(clock.now), at=8.0)
    assert clock.run_until(lambda: len(done) == 1)
    assert clock.now == 2.0
    assert not clock.run_until(lambda: len(done) == 2, limit=5.0)
    assert (done, clock.now) == ([2.0], 5.0)


def test_an_error_in_a_task_fails_the_test(clock: FakeClock) -> None:
    def broken() -> None:
        clock.sleep(1.0)
        raise ValueError("bug in the code under test")

    clock.spawn(broken, name="broken")
    with pytest.raises(TaskFailed, match="broken") as failure:
        clock.run_all()
    assert isinstance(failure.value.__cause__, ValueError)


def test_close_stops_waiting_tasks_past_their_except_exception(clock: FakeClock) -> None:
    trace: list[str] = []

    def forever() -> None:
        try:
            clock.sleep(1000.0)
            trace.append("woke")
        except Exception:
            trace.append("caught")
        finally:
            trace.append("finally")

    task = clock.spawn(forever)
    clock.advance_to(10.0)
    clock.close()
    assert trace == ["finally"] and task.done


# --- ScriptedBackend ------------------------------------------------------------------------------
def consume(clock: FakeClock, backend: ScriptedBackend, question: str) -> list[tuple[float, str]]:
    """Stream an answer inside a task, noting when each piece arrives."""
    got: list[tuple[float, str]] = []

    def reader() -> None:
        for piece in backend.stream([{"role": "user", "content": question}]):
            got.append((clock.now, piece))

    clock.spawn(reader, at=1.0)
    clock.run_all()
    return got


def test_the_scripted_backend_streams_its_pieces_at_their_times(clock: FakeClock) -> None:
    backend: ChatBackend = ScriptedBackend(clock)  # mypy checks that it is a ChatBackend
    assert isinstance(backend, ScriptedBackend)
    backend.stream_pieces("q", [(0.5, "a"), (2.0, "b")])
    assert consume(clock, backend, "q") == [(1.5, "a"), (3.0, "b")]
    assert consume(clock, backend, "other") == [(3.0, "echo: other")]  # unscripted: echo at once
    assert [(call.question, call.outcome) for call in backend.calls] == [("q", "done"), ("other", "done")]


def test_the_scripted_backend_fails_at_its_time(clock: FakeClock) -> None:
    backend = ScriptedBackend(clock)
    backend.fail("q", LLMError("timeout", "read timeout"), after=4.0, pieces=[(1.0, "part")])
    with pytest.raises(TaskFailed) as failure:
        consume(clock, backend, "q")
    error = failure.value.__cause__
    assert isinstance(error, LLMError) and error.kind == "timeout"
    (call,) = backend.calls
    assert (call.pieces, call.outcome, call.ended) == (["part"], "failed", 5.0)


def test_a_caller_that_hangs_up_and_a_stream_that_never_ends_are_told_apart(clock: FakeClock) -> None:
    backend = ScriptedBackend(clock)
    backend.hang("q", pieces=[(1.0, "first")])

    def reader() -> None:
        stream = backend.stream([{"role": "user", "content": "q"}])
        next(stream)
        stream.close()  # e.g. a run that lost its lease

    clock.spawn(reader)
    clock.spawn(lambda: list(backend.stream([{"role": "user", "content": "q"}])))
    clock.run_all()
    assert clock.now == 1.0  # nothing is scheduled before the end of time
    clock.close()
    assert [call.outcome for call in backend.calls] == ["hung up", "cancelled"]


# --- FakeWaiter and ReadyBus --------------------------------------------------------------------------
#: names no other test uses, so that nothing left over from another test is heard here
ALICE, BOB = "clock-test-alice", "clock-test-bob"


@pytest.fixture
def bus(clock: FakeClock, redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[ReadyBus]:
    heard = ReadyBus(clock, redis_server.url)
    yield heard
    heard.close()


def test_a_ticket_wakes_when_its_users_notice_is_published(
    clock: FakeClock, bus: ReadyBus, redis_client: redis.Redis
) -> None:
    waiter = bus.add(FakeWaiter(clock))
    woke: list[tuple[float, bool]] = []

    def wait_once() -> None:
        with waiter.ticket(ALICE) as ticket:
            notified = ticket.wait(10.0)
            woke.append((clock.now, notified))

    clock.spawn(wait_once)
    clock.spawn(lambda: redis_client.publish(keys.ready_channel(BOB), "1"), at=0.1)
    clock.spawn(lambda: redis_client.publish(keys.ready_channel(ALICE), "1"), at=0.2)
    clock.run_all()
    assert woke == [(0.2, True)]
    assert bus.heard == [(0.1, BOB), (0.2, ALICE)]


def test_a_ticket_without_a_notice_rechecks_like_the_real_one(clock: FakeClock, bus: ReadyBus) -> None:
    waiter = bus.add(FakeWaiter(clock))
    woke: list[tuple[float, bool]] = []

    def wait_twice() -> None:
        with waiter.ticket(ALICE) as ticket:
            for timeout in (10.0, 0.2):
                notified = ticket.wait(timeout)
                woke.append((clock.now, notified))

    clock.spawn(wait_twice)
    clock.run_all()
    assert woke == [(RECHECK_SECONDS, False), (RECHECK_SECONDS + 0.2, False)]
    assert waiter.tickets == {}


def test_a_ticket_waited_on_from_the_tests_thread_runs_the_world_meanwhile(
    clock: FakeClock, bus: ReadyBus, redis_client: redis.Redis
) -> None:
    waiter = bus.add(FakeWaiter(clock))
    clock.spawn(lambda: redis_client.publish(keys.ready_channel(ALICE), "1"), at=0.3)
    with waiter.ticket(ALICE) as ticket:
        assert ticket.wait(5.0)
    assert clock.now == 0.3
