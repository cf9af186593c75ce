"""A built process's objects leave the garbage collector's full walks (bot/heap.py): a gunicorn worker
once the app is built, a job worker once its actors are, any process once a heavy library is loaded.
What was garbage at that moment is collected, not kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer
from testing.patience import wait_for

ROOT = Path(__file__).resolve().parents[2]


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


def test_settle_collects_the_garbage_then_freezes_what_is_alive() -> None:
    """In a process of its own: the test session has frozen its imports (tests/conftest.py), which an
    unfreeze here would give back to every later test's collections."""
    code = """
import gc, weakref
from bot import heap


class Node:
    def __init__(self):
        self.other = None


alive, cycle = Node(), Node()
cycle.other = Node()
cycle.other.other = cycle  # a cycle: only the collector frees it
dead = weakref.ref(cycle)
del cycle
assert dead() is not None
heap.settle()
tracked = gc.get_objects()  # the generations a collection walks, not the permanent one
print(dead() is None and gc.get_freeze_count() > 0 and not any(o is alive for o in tracked))
"""
    assert run_python(code) == "True"


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
    log = (tmp_path / "gunicorn.log").open("wb")
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def answer() -> str | None:
            assert web.poll() is None, (tmp_path / "gunicorn.log").read_text(errors="replace")[-2000:]
            try:
                return requests.get(f"http://127.0.0.1:{port}/frozen", timeout=5).text
            except requests.RequestException:
                return None

        frozen = wait_for(answer, what="gunicorn to answer", timeout=60)
        assert frozen is not None and int(frozen) > 10_000  # Flask, the app, the config: thousands
    finally:
        web.terminate()
        web.wait(timeout=30)
        log.close()


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
