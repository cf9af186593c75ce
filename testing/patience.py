"""Waiting for what the bot finishes after a reply (the job writes the history and some metrics once the
answer's end is out, so that the reply never waits for them), without timed assertions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: seconds before a wait gives up: only a hang guard for a broken test, never a measure of speed
PATIENCE = 60.0


def wait_for(condition: Callable[[], T], timeout: float = PATIENCE, what: str = "the condition") -> T:
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return found
