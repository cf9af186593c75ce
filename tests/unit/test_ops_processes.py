"""bot/ops/processes.py: what the operator tools start, they stop — children of children included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bot.ops.processes import ping, stop_group

ROOT = Path(__file__).resolve().parents[2]

#: a process that ignores SIGTERM and starts a grandchild that ignores it too (a stuck worker)
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"],
    stdout=sys.stdout)
print(child.pid, flush=True)
time.sleep(60)
"""


def gone(process: psutil.Process, timeout: float = 5.0) -> bool:
    """Exited (a zombie counts: reaping a grandchild is its new parent's business)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_stop_group_kills_the_whole_group_when_sigterm_is_ignored() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    grandchild = psutil.Process(int(next(line for line in lines if line.strip())))
    started = time.monotonic()
    stop_group(process, timeout=0.5)
    process.stdout.close()
    assert process.returncode == -9 and time.monotonic() - started < 5
    assert gone(grandchild)


#: a launcher in miniature: one child in its own session, tied to it by die_with_parent
LAUNCHER = """
import subprocess, sys, time
from bot.ops.processes import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
    start_new_session=True, preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_in_its_own_session_dies_with_a_killed_parent() -> None:
    """kill -9 of the launcher (or a test's cleanup) must not leave gunicorn, Dramatiq or Redis behind."""
    parent = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    parent.stdout.close()
    assert child.is_running() and os.getpgid(child.pid) == child.pid
    parent.kill()
    parent.wait(timeout=10)
    assert gone(child)


def test_stop_group_of_an_exited_process_does_nothing() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    process.wait()
    stop_group(process)
    assert process.returncode == 0


def test_ping_is_false_without_a_server(refused_port: int) -> None:
    assert not ping(refused_port, timeout=0.2)
