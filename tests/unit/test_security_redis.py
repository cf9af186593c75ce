"""The embedded Redis is its owner's alone: files 0600 in a 0700 directory, a password every client
must give, kept off the command line, and a URL note only the owner can read."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.ops import bootstrap, redis_server
from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer, embedded_url, new_password, note_url, url_file

DEADLINE = 30.0  # a guard against hanging, not a timing assertion

#: a refused client fails at once (redis-py retries connection errors by default)
NO_RETRY = Retry(NoBackoff(), 0)


def modes(top: Path) -> dict[str, int]:
    """Every directory and file under `top` (itself included) -> its permission bits."""
    found = {".": stat.S_IMODE(top.stat().st_mode)}
    for path in top.rglob("*"):
        found[str(path.relative_to(top))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(top: Path) -> None:
    for name, mode in modes(top).items():
        path = top / name
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{name}: {oct(mode)}, not {oct(expected)} ({modes(top)})"


def rewrite_aof(client: redis.Redis) -> None:
    """BGREWRITEAOF and wait for it: Redis writes a new file (temp file, then rename)."""
    client.bgrewriteaof()
    deadline = time.monotonic() + DEADLINE
    while True:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        assert time.monotonic() < deadline, "the AOF rewrite did not finish"
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "data" / "redis"
    data.mkdir(parents=True, mode=0o755)
    os.chmod(data, 0o755)
    stale = data / "redis.log"  # left world-readable by an earlier version
    stale.write_text("an older run\n")
    os.chmod(stale, 0o644)
    with RedisServer(data, persist=True, password=new_password()) as started:
        yield started


def test_its_files_and_directory_are_private(server: RedisServer) -> None:
    """Before: the AOF (every conversation, openid, the access_token) at 0644 under 0755 directories."""
    with redis.Redis.from_url(server.url) as client:
        client.set("wxbot:user:someone:history", "a conversation")
        rewrite_aof(client)
    assert list(server.data_dir.glob("appendonly*"))
    assert_private(server.data_dir)
    server.stop()  # SIGTERM: Redis flushes the AOF
    assert_private(server.data_dir)
    assert not server.config_path.exists()  # the password is gone with the server


def test_a_client_without_the_password_is_refused(server: RedisServer) -> None:
    """Before: no password at all, so any local user could add themselves to wxbot:admins."""
    assert server.password and server.password in server.url
    stranger = redis.Redis(host="127.0.0.1", port=server.port, retry=NO_RETRY)
    with stranger, pytest.raises(redis.exceptions.AuthenticationError):
        stranger.sadd("wxbot:admins", "intruder")
    guesser = redis.Redis(host="127.0.0.1", port=server.port, password="guessed", retry=NO_RETRY)
    with guesser, pytest.raises(redis.exceptions.AuthenticationError):
        guesser.ping()
    with redis.Redis.from_url(server.url) as owner:
        assert owner.ping() and not owner.sismember("wxbot:admins", "intruder")
    # not on the command line: /proc/PID/cmdline is readable by every local user (Redis rewrites its
    # process title once started, but not before)
    command = server._command("redis-server")
    assert str(server.config_path.resolve()) == command[1]
    assert not any(server.password in word for word in command)
    assert server.password in server.config_path.read_text()


def test_the_url_note_is_private_and_the_tools_find_the_password(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    note_url(data_dir, server.url)
    assert stat.S_IMODE(url_file(data_dir).stat().st_mode) == 0o600
    assert embedded_url(data_dir) == server.url
    env_file = tmp_path / ".env"
    env_file.write_text(f"WECHAT_TOKEN=t\nOPENAI_API_KEY=k\nDATA_DIR={data_dir}\n")
    for name in ("REDIS_URL", "DATA_DIR", "WECHAT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    found = bootstrap.settings(env_file, running_redis=True).redis_url  # `make admin-code`'s way
    with redis.Redis.from_url(found) as client:
        assert client.ping()


def test_a_test_server_without_a_password_still_answers(tmp_path: Path) -> None:
    """The tests' throwaway server (persist=False, no password) works as before, but private too."""
    with RedisServer(tmp_path / "r") as plain, redis.Redis.from_url(plain.url) as client:
        assert plain.url == f"redis://127.0.0.1:{plain.port}/0" and client.ping()
        assert_private(plain.data_dir)


def test_a_port_race_retry_keeps_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first port is taken: the server starts again on another one, still with its password."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], free_port()])
        monkeypatch.setattr(redis_server, "free_port", lambda: next(ports))
        with RedisServer(tmp_path / "r", password=new_password()) as server:
            assert server.port != taken.getsockname()[1]
            with redis.Redis.from_url(server.url) as client:
                assert client.ping()


def test_a_server_that_could_not_make_its_directory_stops_quietly(tmp_path: Path) -> None:
    """stop() after a failed start (DATA_DIR a file): its own traceback used to hide the first one."""
    (tmp_path / "a-file").write_text("")
    server = RedisServer(tmp_path / "a-file" / "redis", password=new_password())
    with pytest.raises(NotADirectoryError):
        server.start()
    server.stop()
