"""Logging of the real processes: the job workers (Dramatiq's command line, its master and two worker
processes) and the web tier (gunicorn: master, worker, access log), each run with LOG_FORMAT=json and
=text, made to log a request and a job. Every line of their output must be one event in the chosen
format — never a second copy in Dramatiq's or gunicorn's own format.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from bot.answering.jobs import worker_command
from bot.config import load_settings
from bot.logs import configure_logging
from bot.ops.redis_server import free_port
from testing.fakes.openai_server import FakeOpenAI
from testing.patience import wait_for
from testing.simulator import WeChatSimulator
from tests.conftest import APPID, ATTEMPT_TIMEOUT, ROOT, TOKEN, wait_healthy, worker_env

#: bot.logs.TEXT_FORMAT: "%(asctime)s %(levelname)s %(process)d %(name)s [%(request_id)s] %(message)s"
TEXT_LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<pid>\d+) (?P<logger>\S+) \[[^\]]*\] (?P<message>.*)"
)
#: ISO 8601 with milliseconds and a zone: 2026-12-01T11:20:50.123+00:00 (or …Z)
JSON_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)")


class Event(NamedTuple):
    time: str
    pid: int
    logger: str
    message: str


def parse(line: str, log_format: str) -> Event:
    """One output line as an event; fails the test if it is not a line of ours in `log_format`."""
    if log_format == "json":
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(record, dict), line
        assert JSON_TIME.fullmatch(record["time"]), line
        assert datetime.datetime.fromisoformat(record["time"]).utcoffset() is not None, line
        return Event(record["time"], record["pid"], record["logger"], record["message"])
    found = TEXT_LINE.fullmatch(line)
    assert found is not None, f"not a line of ours: {line!r}"
    return Event(found["time"], int(found["pid"]), found["logger"], found["message"])


def events(path: Path, log_format: str) -> list[Event]:
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed = [parse(line, log_format) for line in lines if line.strip()]
    twice = [event for event, count in Counter(parsed).items() if count > 1]
    assert not twice, f"logged more than once: {twice}"
    return parsed


def count(found: list[Event], pattern: str, logger: str = "") -> int:
    return sum(1 for e in found if re.search(pattern, e.message) and e.logger.startswith(logger))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start a command with its stdout and stderr in one file; stopped at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def run(name: str, command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        output = tmp_path / f"{name}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        started.append(process)
        return process, output

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the main process only (as systemd's KillMode=mixed does): it stops its children."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_workers_and_web_log_each_event_once_in_the_chosen_format(
    log_format: str,
    base_config: dict[str, Any],
    fake_openai: FakeOpenAI,
    start: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    config = base_config | {"log_format": log_format}
    command, extra_env = worker_command(2, 2)
    assert command[1:3] == ["-m", "bot.answering.worker"], (
        "bot.answering.jobs.worker_command must start the launcher (`python -m bot.answering.worker`), "
        f"which sets up logging in Dramatiq's master process too; it starts {command[1:3]}"
    )
    workers, workers_log = start("workers", command, worker_env(config) | extra_env)

    port = free_port()
    web_env = worker_env(config) | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_WORKERS": "1"}
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
    web, web_log = start("web", gunicorn, web_env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, web)
    wait_for(lambda: requests.get(base + "/readyz", timeout=10).status_code == 200)  # the workers are up

    # a request the web tier logs, and a job the worker logs (the LLM refuses: a warning)
    fake_openai.set_behavior(fail_status=400)
    sim = WeChatSimulator(base + "/wechat", TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT)
    delivery = sim.send_text("user-1", "hello")
    assert delivery.reply is not None
    forged = "/wechat?signature=x&timestamp=1&nonce=2&openid=o"
    unsigned = requests.post(base + forged, data=b"<xml/>", timeout=10)
    assert unsigned.status_code == 403
    wait_for(lambda: "failed" in workers_log.read_text(encoding="utf-8"))
    assert workers.poll() is None and web.poll() is None
    stop(workers)
    stop(web)

    worker_events = events(workers_log, log_format)
    assert count(worker_events, r"^Dramatiq .* is booting up\.$", "dramatiq.MainProcess") == 1
    ready = [e for e in worker_events if e.message == "Worker process is ready for action."]
    assert len(ready) == 2 and len({e.pid for e in ready}) == 2
    assert count(worker_events, r"^answer \S+ failed: ", "bot.answering") == 1
    assert count(worker_events, r"^Sending signal 'SIGTERM' to subprocesses", "dramatiq.MainProcess") == 1

    web_events = events(web_log, log_format)
    assert count(web_events, r"^Starting gunicorn", "gunicorn.error") == 1
    assert count(web_events, r"^Booting worker with pid", "gunicorn.error") == 1
    # a push's delivery: the webhook's line only, not gunicorn's too (an attempt the simulator gave up on
    # may end without one); a refused POST, which the webhook logs as a warning, keeps its access line
    assert 1 <= count(web_events, r"\battempt=\d\b.*\bplan=ask\b", "bot.") <= len(delivery.attempts)
    assert count(web_events, r"\battempt=1\b.*\bplan=ask\b", "bot.") == 1
    assert count(web_events, r'"POST /wechat" 200 ', "gunicorn.access") == 0
    assert count(web_events, r'"POST /wechat" 403 ', "gunicorn.access") == 1
    assert count(web_events, r'"GET /readyz" 200 ', "gunicorn.access") >= 1


def test_configure_logging_replaces_the_console_handler_it_finds(
    base_config: dict[str, Any], tmp_path: Path
) -> None:
    """`python -m dramatiq bot.answering.worker` (the older command) runs `logging.basicConfig` in each
    worker process before our module configures logging: ours replaces that handler instead of adding
    a second one. A file handler (or a test's capture handler) is not a console and stays."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    dramatiqs = logging.StreamHandler(io.StringIO())  # what logging.basicConfig(stream=…) installs
    kept = logging.FileHandler(tmp_path / "kept.log", delay=True)
    try:
        root.handlers = [dramatiqs, kept]
        configure_logging(load_settings(**base_config, log_format="json"))
        configure_logging(load_settings(**base_config, log_format="json"))  # twice: still one
        consoles = [h for h in root.handlers if type(h) is logging.StreamHandler]
        assert len(consoles) == 1 and consoles[0] is not dramatiqs
        assert kept in root.handlers and len(root.handlers) == 2
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        kept.close()
