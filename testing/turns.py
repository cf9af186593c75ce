"""Turns at the CPU for the workers of one pytest-xdist run (`make test` runs two).

A test module marked `alone` (a local model's inference on every core, a hundred users at once) runs
while no other worker runs a test, so that its load cannot starve another worker's tests of the CPU
their timing needs (WeChat's attempt timeouts, the equation solver's time limit); every other test
shares the machine with the other workers' tests, as the tests of a serial run share it with nothing.

Two flock(2) files in the run's shared temporary directory: `turn`, held shared by each test and
exclusively by an `alone` module, and `gate`, held while asking for `turn`: a module waiting for its
exclusive turn holds the gate, so the next tests of the other workers queue behind it instead of
overtaking it (a bare flock gives a waiting exclusive lock no precedence over new shared ones). Both
are always taken in that order, gate then turn, so no two workers wait for each other.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self


class Turns:
    def __init__(self, folder: Path) -> None:
        """`folder`: shared by the workers of one run (and by no other run)."""
        self._turn = (folder / "cpu-turn.lock").open("a")
        self._gate = (folder / "cpu-gate.lock").open("a")

    @contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        """The CPU alone (`exclusive`), or shared with the other workers' tests, until the block ends."""
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._turn, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._turn, fcntl.LOCK_UN)

    def close(self) -> None:
        self._turn.close()
        self._gate.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
