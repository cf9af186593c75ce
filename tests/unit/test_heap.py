"""A built process's objects leave the garbage collector's full walks (bot/heap.py): a gunicorn worker
once the app is built, a job worker once its actors are, any process once a heavy library is loaded.
What was garbage at that moment is collected, not kept."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import requests

from bot import heap
from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer
from testing.patience import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """A container the collector tracks; two of them referring to each other make a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_collects_the_garbage_then_freezes_what_is_alive() -> None:
    alive = Node()
    cycle = Node()
    cycle.other = Node()
    cycle.other.other = cycle
    dead = weakref.ref(cycle)
    del cycle
    assert dead() is not None  # a cycle: only the collector frees it
    try:
        heap.settle()
        assert dead() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > 0
        tracked = gc.get_objects()  # the generations a collection walks, not the permanent one
        assert not any(found is alive for found in tracked)
    finally:
        gc.unfreeze()
    assert any(found is alive for found in gc.get_objects())


def run_python(code: str, **env: str) -> str:
    """`code` in a fresh interpreter at the project's root; what it printed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "REDIS_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


PROBE = """
import gc
from flask import Flask

app = Flask(__name__)


@app.get("/frozen")
def frozen() -> str:
    return str(gc.get_freeze_count())
"""


def test_a_real_gunicorn_worker_has_frozen_its_objects(tmp_path: Path) -> None:
    """The hook as gunicorn calls it: in each worker, after the app is built there."""
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_WORKERS": "1", "WEB_THREADS": "2"}
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
    command += ["--pythonpath", str(tmp_path), "probe:app"]
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def answer() -> str | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/frozen", timeout=5).text
            except requests.ConnectionError:
                return None

        frozen = wait_for(answer, what="gunicorn to answer", timeout=60)
        assert frozen is not None and int(frozen) > 10_000  # Flask, the app, the config: thousands
    finally:
        web.terminate()
        web.wait(timeout=30)


def test_a_job_worker_settles_once_its_actors_are_registered(redis_server: RedisServer) -> None:
    code = """
import gc
from bot.answering import worker  # imported as Dramatiq imports it in each worker process: boot()
print(gc.get_freeze_count() > 0 and not any(o is worker.jobs for o in gc.get_objects()))
"""
    assert run_python(code, WECHAT_TOKEN="t", OPENAI_API_KEY="x", REDIS_URL=redis_server.url) == "True"


def test_loading_a_heavy_library_settles_its_tables() -> None:
    code = """
import gc
from bot.lazy import LazyModule
decimal = LazyModule("decimal")
before = gc.get_freeze_count()
decimal.Decimal  # the first attribute read imports it
print(before == 0 and gc.get_freeze_count() > 0)
"""
    assert run_python(code) == "True"
