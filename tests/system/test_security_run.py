"""`make run`'s embedded Redis for real: private files, a password, and the tools that find it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.ops.processes import free_port
from bot.ops.redis_server import url_file
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import ROOT, wait_healthy
from tests.system.test_run import kill_tree, launcher_env

#: a refused client fails at once (redis-py retries connection errors by default)
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture
def running(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    port = free_port()
    env = launcher_env(tmp_path, port, fake_openai)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.ops.run"], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        yield process, env
    finally:
        kill_tree(process)


@pytest.mark.slow
def test_make_runs_redis_wants_a_password_that_only_its_user_can_read(
    running: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
) -> None:
    """Before: no password, the AOF 0644 under 0755 directories — any local user could read every
    conversation and add themselves to the admins."""
    process, env = running
    data = tmp_path / "data"
    note = url_file(data)
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    url = note.read_text().strip()
    parts = urlsplit(url)
    assert parts.password and parts.port
    redis_dir = data / "redis"
    assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700
    files = [path for path in redis_dir.rglob("*") if path.is_file()]
    assert any(path.name.startswith("appendonly") for path in redis_dir.rglob("*")), files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    stranger = redis.Redis(host="127.0.0.1", port=parts.port, retry=NO_RETRY)
    with stranger, pytest.raises(redis.exceptions.AuthenticationError):
        stranger.sadd("wxbot:admins", "intruder")

    # `make check` finds the embedded Redis (and never prints its password)
    checked = subprocess.run(
        [sys.executable, "-m", "bot.ops.check"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    output = checked.stdout.decode()
    assert "[  ok] embedded Redis: answers; persistence appendonly=yes" in output, output
    assert parts.password not in output + checked.stderr.decode()

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert not note.exists() and not (redis_dir / "redis.conf").exists()
