"""Small helpers for the processes the operator tools start: a free port, a Redis PING, a clean stop.

One copy for `make run`, the embedded Redis and the local FastChat cluster, so that they all pick
ports and stop their children the same way. Standard library only: bot/ops/local_llm.py runs it
in the bot's venv while it drives another one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"
#: how long a process group gets to exit after SIGTERM before it is killed
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (Linux only; elsewhere None)."""
    with contextlib.suppress(OSError, AttributeError):
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    return None


_PRCTL = _find_prctl()


def free_port() -> int:
    """A TCP port that was free a moment ago (the caller retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server on 127.0.0.1:port answers PING (raw RESP, no client library needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when the thread that started it dies, even by SIGKILL.

    A child that leads its own process group (start_new_session) is out of reach of a kill of its
    parent's group — a test's cleanup, a `kill -9` of the launcher —; this stops it from living on.
    Start such children from the main thread: the signal follows the starting thread's end.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the process group, SIGKILL after `timeout`.

    The whole group, not only the child: gunicorn, Dramatiq and FastChat start processes of their
    own, and none of them may outlive the tool. `process` must lead its group (start_new_session).
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
