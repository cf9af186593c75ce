"""Child processes of the benchmarks: started in their own session, always killed as a group.

Every child (gunicorn and its workers, Dramatiq and its worker processes) gets its own process
group, so `stop()` reaches the grandchildren too; `Children` is a context manager so that a
failed or interrupted benchmark still cleans up everything it started.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil
import redis

from bot.answering import jobs

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
#: settings the bench sets itself: inherited values must not leak into the measured processes
_OWN_PREFIXES = ("WECHAT_", "OPENAI_", "REDIS_", "WEB_", "WORKER_", "LLM_", "LOG_")
STOP_TIMEOUT = 10.0


def clean_env(**settings: str) -> dict[str, str]:
    """The parent's environment without bot settings, plus `settings` (names upper-cased)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES) and k not in ("PORT", "HOST")
    }
    env.update({name.upper(): value for name, value in settings.items()})
    return env


def gunicorn_command(app_spec: str) -> list[str]:
    """The production command line (bot/ops/run.py) with another app when benchmarking the baseline."""
    return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), app_spec]


def start_worker(children: Children, env: dict[str, str], threads: int = 128, processes: int = 1) -> Child:
    """Dramatiq worker processes, started exactly as `make run` starts them (bot.answering.jobs)."""
    command, extra = jobs.worker_command(processes, threads)
    return children.start("worker", command, env | extra)


def wait_worker(worker: Child, redis_url: str, processes: int = 1, timeout: float = 30.0) -> None:
    """The job workers are ready once each process's consumer has sent a heartbeat (and so fetches)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"the worker exited during startup:\n{worker.log_text()[-3000:]}")
            if client.zcard("dramatiq:__heartbeats__") >= processes:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"the worker did not start within {timeout:.0f} s")


def peak_rss(children: list[Child]) -> list[tuple[str, int]]:
    """(name and pid, peak resident memory in bytes: VmHWM) of every process the children started."""
    found = []
    for child in children:
        try:
            leader = psutil.Process(child.process.pid)
            processes = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            peak = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
            found.append(
                (f"{child.name}[{process.pid}] {' '.join(process.cmdline()[1:4])}", int(peak) * 1024)
            )
    return found


def tree(pid: int | None) -> list[int]:
    """A process and its descendants (none when it is gone)."""
    if pid is None:
        return []
    try:
        leader = psutil.Process(pid)
        return [pid, *(child.pid for child in leader.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) used so far by each named group of processes."""
    used = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        used[name] = total
    return used


class Child:
    """One command in its own session; its output goes to a log file for the post-mortem."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._stopped = False
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM to the leader, then SIGKILL to the whole group (whatever is left of it).

        Only the leader gets SIGTERM: gunicorn and Dramatiq forward it to their workers, and a
        Dramatiq worker process that gets a second SIGTERM (ours, then its parent's) dies at once.
        Once only: a phase may stop a child early, and its group id may be reused by then.
        """
        if self._stopped:  # its process group may be another's by now
            return
        self._stopped = True
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._signal(signal.SIGKILL)  # stragglers whose parent already exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Children:
    """The children of one benchmark phase, stopped in reverse order on exit (whatever happens)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        child = Child(name, command, env, self.log_dir / f"{name}.log")
        self.started.append(child)
        return child

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in reversed(self.started):
            child.stop()


def http_status(port: int, method: str, path: str, timeout: float = 1.0) -> int | None:
    """Status of one request to 127.0.0.1:port, or None when nothing answers yet."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_http(child: Child, port: int, path: str, timeout: float = 20.0) -> None:
    """Wait until the server answers `path` with a non-5xx status (any gunicorn worker has booted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during startup:\n{child.log_text()[-3000:]}")
        status = http_status(port, "GET", path)
        if status is not None and status < 500:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {path} within {timeout:.0f} s")


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so that every `finally`/`with` cleans up its children."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
