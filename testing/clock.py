"""FakeClock: fake time for the 5-second logic, and the tasks that live in it.

`monotonic()` and `time()` read the fake clock; nothing moves it but the test (`advance`, `run_until`,
`sleep` from the test's own thread). Code that must wait in fake time runs as a *task*: a real thread
that runs only while the clock hands it the baton. A task gives the baton back whenever it waits
(`sleep`, `sleep_until`, `suspend`) or ends, so exactly one thread runs at a time and every run of a
test takes the same steps in the same order: what happens at t=4.3 happens at t=4.3, in
milliseconds of real time, whatever the machine's load.

Tasks at the same fake instant run in the order they were scheduled. A suspended task can be woken
early with `poke` (a waiter that heard a notice, WeChat hearing a reply). Hooks added with
`after_step` run after every step of every task (e.g. to hear the Redis notices that step sent).

A task that blocks on something real (a lock another suspended task holds, a socket) stops the
simulation: after `guard` seconds of real time the clock gives up with an error that names the task
instead of hanging the test (a deadlock guard, not a timing assertion).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: real seconds a task may run without giving the baton back before the clock calls it stuck
DEADLOCK_GUARD = 60.0


#: the fake clock's resolution (seconds)
GRID = 1e-9


def on_grid(when: float) -> float:
    """Fake instants on a nanosecond grid, so that 0.1 + 4.2 is the same instant as 4.3."""
    return when if math.isinf(when) else round(when, 9)  # GRID


class Cancelled(BaseException):
    """Raised inside a task the clock stops (the end of a test). A BaseException, so that code that
    catches every Exception to survive its own bugs does not catch it."""


class TaskFailed(AssertionError):
    """A task raised: the test fails with the task's error as the cause."""


@dataclass(eq=False)
class Task:
    """One thread of the simulation (a WeChat attempt, a job, a push)."""

    clock: FakeClock
    fn: Callable[[], Any]
    name: str
    thread: threading.Thread = field(init=False)
    resume: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    #: the task waits in `suspend(pokeable=True)` and may be woken early
    pokeable: bool = False
    poked: bool = False
    #: entries of the clock's queue with another token are stale
    token: int = 0

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._main, name=f"fake-clock:{self.name}", daemon=True)

    def _main(self) -> None:
        self.clock._local.task = self
        self.resume.wait()
        self.resume.clear()
        try:
            if self.cancelled:
                raise Cancelled
            self.result = self.fn()
        except Cancelled:
            pass
        except BaseException as exc:  # handed to the test by the clock
            self.error = exc
        finally:
            self.done = True
            self.clock._yielded.set()


class FakeClock:
    """Fake monotonic and wall time (seconds since the start of the scene, and that plus `wall_start`)."""

    def __init__(self, wall_start: float | None = None, guard: float = DEADLOCK_GUARD) -> None:
        self.wall_start = time.time() if wall_start is None else wall_start
        self.guard = guard
        self._now = 0.0
        self._queue: list[tuple[float, int, Task, int]] = []
        self._seq = itertools.count()
        self._tasks: list[Task] = []
        self._hooks: list[Callable[[], None]] = []
        self._local = threading.local()
        self._yielded = threading.Event()
        self._closed = False

    # --- reading the clock --------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Fake seconds since the clock started (also what `monotonic()` returns)."""
        return self._now

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self.wall_start + self._now

    # --- waiting --------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """In a task: wait that long in fake time. In the test's thread: advance the clock that far."""
        self.sleep_until(self._now + max(0.0, seconds))

    def sleep_until(self, when: float) -> None:
        """In a task: wait until fake time `when` (math.inf: until the clock closes). In the test's
        thread: advance the clock to `when`."""
        task = self.current_task()
        if task is None:
            self.advance_to(when)
        else:
            self.suspend(max(when, self._now))

    def suspend(self, until: float, *, pokeable: bool = False) -> bool:
        """In a task: give the baton back until fake time `until` (or a `poke`, when pokeable).
        True when a poke woke it."""
        task = self.current_task()
        if task is None:
            raise RuntimeError("suspend() is for tasks; the test's thread advances the clock instead")
        if task.cancelled:  # being stopped: a `finally` that waits again does not wait
            raise Cancelled
        task.poked = False
        task.pokeable = pokeable
        if self._now < until < self._now + GRID:
            # a wait shorter than the grid would be rounded to no wait at all: code that waits for a
            # deadline a rounding error away (arrived + 4.5 computed in floats) would loop at one instant
            until = self._now + GRID
        self._schedule(task, max(until, self._now))
        self._yielded.set()
        task.resume.wait()
        task.resume.clear()
        task.pokeable = False
        if task.cancelled:
            raise Cancelled
        return task.poked

    def poke(self, task: Task) -> None:
        """Wake a task suspended with pokeable=True now (at the current fake time)."""
        if task.pokeable and not task.done and not task.poked:
            task.poked = True
            self._schedule(task, self._now)

    def current_task(self) -> Task | None:
        task = getattr(self._local, "task", None)
        return task if isinstance(task, Task) else None

    # --- tasks ----------------------------------------------------------------------------------
    def spawn(self, fn: Callable[[], Any], *, at: float | None = None, name: str = "task") -> Task:
        """Run `fn` as a task from fake time `at` (default: now)."""
        if self._closed:
            raise RuntimeError("the clock is closed")
        task = Task(self, fn, name)
        self._tasks.append(task)
        task.thread.start()
        self._schedule(task, self._now if at is None else max(at, self._now))
        return task

    def after_step(self, hook: Callable[[], None]) -> None:
        """Call `hook` (in the test's thread) after every step of every task."""
        self._hooks.append(hook)

    def _schedule(self, task: Task, when: float) -> None:
        when = on_grid(when)
        task.token += 1
        heapq.heappush(self._queue, (when, next(self._seq), task, task.token))

    def _next(self) -> tuple[float, Task] | None:
        """The next valid entry of the queue; None when there is none before the end of time."""
        while self._queue:
            when, _, task, token = self._queue[0]
            if token == task.token and not task.done:
                return None if when == math.inf else (when, task)
            heapq.heappop(self._queue)
        return None

    def next_time(self) -> float | None:
        """When the next task runs (None: nothing is scheduled)."""
        upcoming = self._next()
        return None if upcoming is None else upcoming[0]

    def step(self) -> bool:
        """Run the next scheduled task until it waits or ends; False when nothing is scheduled."""
        if self.current_task() is not None:
            raise RuntimeError("only the test's thread moves the clock")
        upcoming = self._next()
        if upcoming is None:
            return False
        heapq.heappop(self._queue)
        when, task = upcoming
        self._now = max(self._now, when)
        self._run(task)
        for hook in self._hooks:
            hook()
        if task.error is not None:
            error, task.error = task.error, None
            raise TaskFailed(f"task {task.name!r} failed at t={self._now:g}: {error!r}") from error
        return True

    def _run(self, task: Task) -> None:
        self._yielded.clear()
        task.started = True
        task.resume.set()
        if not self._yielded.wait(self.guard):
            raise RuntimeError(
                f"task {task.name!r} neither waited on the fake clock nor ended within {self.guard:g} s "
                "of real time: it is blocked on something real (a lock held by a suspended task?)"
            )

    # --- moving the clock (the test's thread) ---------------------------------------------------
    def advance_to(self, when: float) -> None:
        """Run everything scheduled up to fake time `when`, then stand at `when`."""
        if when == math.inf:
            raise ValueError("the test's thread cannot wait forever")
        while (upcoming := self.next_time()) is not None and upcoming <= when:
            self.step()
        self._now = max(self._now, on_grid(when))

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)

    def run_until(self, condition: Callable[[], bool], *, limit: float = math.inf) -> bool:
        """Run tasks until `condition()` holds (True), or nothing is left before fake time `limit`
        (False; the clock then stands at the last step, or at `limit` when it is finite)."""
        while not condition():
            upcoming = self.next_time()
            if upcoming is None or upcoming > limit:
                if limit != math.inf:
                    self._now = max(self._now, on_grid(limit))
                return False
            self.step()
        return True

    def run_all(self, *, limit: float = math.inf) -> None:
        """Run until nothing is scheduled (or fake time `limit`)."""
        self.run_until(lambda: False, limit=limit)

    # --- the end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every task that has not ended: each gets Cancelled where it waits."""
        self._closed = True
        self._queue.clear()
        for task in self._tasks:
            if not task.done:
                task.cancelled = True
                self._run(task)
        for task in self._tasks:
            task.thread.join(timeout=self.guard)
        self._tasks.clear()
