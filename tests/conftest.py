"""Shared fixtures: a real redis-server, loopback fakes of WeChat's API and OpenAI, the app served
by a real threaded HTTP server, an in-process Dramatiq worker, and a WeChat-platform simulator.

For the integration and system tests that serve the app for real, the attempt timeout is shortened
(WECHAT_ATTEMPT_TIMEOUT) so an end-to-end exchange takes about a second per attempt; their assertions
never depend on which attempt carries an answer. The decisions of the 5-second logic themselves are
tested with WeChat's real timings in fake time (tests/unit/conftest.py, testing/scene.py).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from bot import heap
from bot.answering.jobs import worker_command
from bot.ops.redis_server import RedisServer, free_port
from bot.store.workers import new_job_worker_id
from bot.tools import equations
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.simulator import WeChatSimulator
from testing.turns import Turns

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token"
APPID = "wx0123456789abcdef"
SECRET = "test-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
#: shortened WeChat attempt timeout used by the tests (WeChat's is 5 s)
ATTEMPT_TIMEOUT = 1.2
REPLY_MARGIN = 0.3
#: how often a served app's accept loop looks at its stop flag: socketserver's default, 0.5 s, was half a
#: second of the teardown of every test that serves the app
SERVE_POLL_INTERVAL = 0.02


@pytest.fixture(autouse=True, scope="session")
def frozen_imports() -> None:
    """Move what the imports made (modules, dictionaries of jieba, pygments…) out of the collector's
    sight once: the collection after each test then walks only what tests made (it took 0.2–0.5 s a
    test with a large heap): what a built process does too (bot/heap.py)."""
    heap.settle()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where a connection is refused for the whole test: bound, never listening (a port
    free_port() found free may be taken by another test's server before it is used)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture(autouse=True)
def patient_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equation solver's 1 s time limit is for production; on a busy machine it turned a correct
    solve in a test into a timeout. Its own test passes a short limit."""
    monkeypatch.setattr(equations, "TIME_LIMIT", 60.0)


@pytest.fixture(autouse=True)
def no_leaked_connections() -> Iterator[None]:
    """Collect garbage after each test, so that a socket it left open fails that test
    (filterwarnings=error turns the ResourceWarning into an error) and not a later, random one."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def cpu_turns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turns | None]:
    """Under pytest-xdist, the workers' turns at the CPU (testing/turns.py); None in a serial run."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield None
        return
    # each worker's base directory is popen-gwN inside the run's own: that one is shared by the workers
    with Turns(tmp_path_factory.getbasetemp().parent) as turns:
        yield turns


@pytest.fixture(autouse=True, scope="module")
def module_alone(request: pytest.FixtureRequest, cpu_turns: Turns | None) -> Iterator[None]:
    """A module marked `alone` has the CPU to itself, from its first fixture to its last teardown."""
    if cpu_turns is None or request.node.get_closest_marker("alone") is None:
        yield
        return
    with cpu_turns.hold(exclusive=True):
        yield


@pytest.fixture(autouse=True)
def test_turn(request: pytest.FixtureRequest, cpu_turns: Turns | None) -> Iterator[None]:
    """Any other test shares the CPU with the other workers' tests, never with an `alone` module."""
    if cpu_turns is None or request.node.get_closest_marker("alone") is not None:
        yield  # in an `alone` module, which holds the CPU already
        return
    with cpu_turns.hold(exclusive=False):
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChatAPI]:
    with FakeWeChatAPI(appid=APPID, secret=SECRET) as fake:
        yield fake


@pytest.fixture
def base_config(
    redis_client: redis.Redis, redis_server: RedisServer, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> dict[str, Any]:
    return {
        "wechat_token": TOKEN,
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_api_base": fake_wechat.url,
        "redis_url": redis_server.url,
        "openai_api_key": "test-key",
        "openai_base_url": fake_openai.base_url,
        "openai_timeout": 10.0,
        "wechat_attempt_timeout": ATTEMPT_TIMEOUT,
        "wechat_reply_margin": REPLY_MARGIN,
        "worker_heartbeat_timeout": 2.0,
        "job_lease_seconds": 3.0,
    }


class Bot:
    """The app, served for real on loopback, with its job worker, and a simulator pointed at it."""

    def __init__(self, app: Flask, server: BaseWSGIServer, worker: dramatiq.Worker | None) -> None:
        self.app = app
        self.server = server
        self.worker = worker
        self.url = f"http://127.0.0.1:{server.server_port}/wechat"
        self.ext = app.extensions["wxbot"]

    @property
    def runtime(self) -> Any:
        return self.ext["runtime"]

    def simulator(self, mode: str = "plain", attempt_timeout: float = ATTEMPT_TIMEOUT) -> WeChatSimulator:
        aes_key = AES_KEY if mode != "plain" else None
        return WeChatSimulator(
            self.url, TOKEN, APPID, aes_key=aes_key, mode=mode, attempt_timeout=attempt_timeout
        )


def start_worker(app: Flask, threads: int = 16) -> dramatiq.Worker:
    """An in-process job worker; its broker is named as a worker's, so /readyz counts its heartbeat."""
    broker = app.extensions["wxbot"]["jobs"].broker
    broker.broker_id = new_job_worker_id()
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    return worker


def serve(app: Flask, port: int = 0) -> BaseWSGIServer:
    """The app served on 127.0.0.1 (`port` 0: any free one) by a threaded server in a daemon thread."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL_INTERVAL}, daemon=True
    ).start()
    return server


def stop_bot(bot: Bot) -> None:
    """Stop serving, stop the job worker, close what the app opened."""
    bot.server.shutdown()
    bot.server.server_close()
    if bot.worker is not None:
        bot.worker.stop()
    bot.ext["jobs"].broker.close()
    bot.ext["waiter"].close()
    bot.runtime.close()


@pytest.fixture
def make_bot(base_config: dict[str, Any], redis_client: redis.Redis) -> Iterator[Callable[..., Bot]]:
    bots: list[Bot] = []

    def make(with_worker: bool = True, worker_threads: int = 16, **overrides: Any) -> Bot:
        app = create_app({**base_config, **overrides})
        bot = Bot(app, serve(app), start_worker(app, worker_threads) if with_worker else None)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        stop_bot(bot)


@pytest.fixture
def bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot()


def worker_env(config: dict[str, Any]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "OPENAI_"))}
    env.update({key.upper(): str(value) for key, value in config.items()})
    return env


@pytest.fixture
def start_worker_process(base_config: dict[str, Any]) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        processes: int = 1, threads: int = 4, config_overrides: dict[str, Any] | None = None
    ) -> subprocess.Popen[bytes]:
        command, extra_env = worker_command(processes, threads)
        env = worker_env(base_config | (config_overrides or {})) | extra_env
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until `url`/healthz answers 200; fails at once if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the web process exited"
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("the web process did not become healthy")


@pytest.fixture
def start_web_process(base_config: dict[str, Any]) -> Iterator[Callable[..., str]]:
    """The production web tier (gunicorn, deploy/gunicorn.conf.py) as its own process; gives its URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**config_overrides: Any) -> str:
        port = free_port()
        env = worker_env(base_config | config_overrides) | {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_WORKERS": "1",
            "WEB_THREADS": "16",
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        started.append(process)
        wait_healthy(f"http://127.0.0.1:{port}", process)
        return f"http://127.0.0.1:{port}/wechat"

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
