"""`make run`'s launcher: embedded Redis + workers + gunicorn in one foreground command; Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bot import texts
from bot.ops.processes import free_port
from testing.fakes.openai_server import FakeOpenAI
from testing.simulator import WeChatSimulator
from tests.conftest import ROOT, TOKEN, wait_healthy


def launcher_env(tmp_path: Path, port: int, fake_openai: FakeOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "REDIS_"))}
    env.update(
        WECHAT_TOKEN=TOKEN,
        OPENAI_BASE_URL=fake_openai.base_url,
        PORT=str(port),
        DATA_DIR=str(tmp_path / "data"),
        WEB_WORKERS="1",
        WEB_THREADS="16",
        WORKER_PROCESSES="1",
        WORKER_THREADS="4",
    )
    return env


@pytest.fixture
def launcher(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.ops.run"],
        cwd=ROOT,
        env=launcher_env(tmp_path, port, fake_openai),
        start_new_session=True,
    )
    yield process, port
    kill_tree(process)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """After a failed test: the launcher and its children, which lead process groups of their own."""
    if process.poll() is not None:
        return
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@pytest.mark.slow
def test_make_run_answers_and_stops_everything_on_ctrl_c(
    launcher: tuple[subprocess.Popen[bytes], int], tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    process, port = launcher
    wait_healthy(f"http://127.0.0.1:{port}", process)
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 3  # redis-server, dramatiq, gunicorn (+ their workers)
    sim = WeChatSimulator(f"http://127.0.0.1:{port}/wechat", TOKEN, "")
    assert sim.send_text("user-1", "hello").text == "echo: hello"
    assert (tmp_path / "data" / "redis").is_dir()
    # `make admin-code` finds the embedded Redis of the running `make run` without REDIS_URL
    env = launcher_env(tmp_path, port, fake_openai)
    made = subprocess.run(
        [sys.executable, "-m", "bot.ops.admin_code"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    code = made.stdout.decode().split("/auth ")[1].strip()
    assert sim.send_text("owner", f"/auth {code}").text == texts.AUTH_OK
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert process.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def test_misconfiguration_stops_startup_naming_the_setting(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    env = launcher_env(tmp_path, free_port(), fake_openai) | {"WECHAT_AES_KEY": "too-short"}
    result = subprocess.run(
        [sys.executable, "-m", "bot.ops.run"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert result.returncode != 0
    assert b"WECHAT_AES_KEY" in result.stderr


def test_admin_code_without_redis_names_the_setting(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    env = launcher_env(tmp_path, free_port(), fake_openai)
    result = subprocess.run(
        [sys.executable, "-m", "bot.ops.admin_code"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 1 and b"REDIS_URL" in result.stderr


@pytest.mark.slow
def test_make_run_logs_every_line_in_the_chosen_format(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """With LOG_FORMAT=json the launcher's own lines are JSON too, like gunicorn's and the workers'."""
    port = free_port()
    env = launcher_env(tmp_path, port, fake_openai) | {"LOG_FORMAT": "json"}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.ops.run"], cwd=ROOT, env=env, start_new_session=True, stderr=log_file
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            kill_tree(process)
    lines = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, or this fails
    messages = [record["message"] for record in records if record["logger"] == "bot.run"]
    assert any(message.startswith("embedded Redis at 127.0.0.1:") for message in messages)
    assert any(message.startswith("bot running: http://") for message in messages)


def test_a_data_dir_that_cannot_be_made_is_named(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A DATA_DIR that is a file: a sentence naming it, not two tracebacks."""
    (tmp_path / "a-file").write_text("")
    env = launcher_env(tmp_path, free_port(), fake_openai) | {"DATA_DIR": str(tmp_path / "a-file")}
    result = subprocess.run(
        [sys.executable, "-m", "bot.ops.run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    said = f"cannot start: DATA_DIR={tmp_path / 'a-file'}: cannot create {tmp_path / 'a-file' / 'redis'}"
    assert f"{said} (Not a directory)" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
