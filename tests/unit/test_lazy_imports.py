"""The knowledge base's heavy libraries (numpy, bm25s, BeautifulSoup, jieba: about 65 MiB) are imported when a
process first searches or reads a page, not when it starts, and the `openai` SDK (about 40 MiB) when a process
first calls the API (bot/lazy.py): a web process that does neither stays small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from bot.ops.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "bm25s", "bs4", "jieba")

BUILD_AND_LIST = """
import sys
import app
from bot.answering import worker  # the job worker's module, with every actor
built = app.create_app()
built.extensions["wxbot"]["runtime"].knowledge.has_documents()  # an empty knowledge base: one GET
print(" ".join(name for name in sys.argv[1:] if name in sys.modules))
"""


def test_building_the_app_and_asking_an_empty_knowledge_base_loads_none_of_them(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "REDIS_", "KB_"))}
    env |= {"WECHAT_TOKEN": "t", "OPENAI_API_KEY": "x", "REDIS_URL": redis_server.url}
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_LIST, *HEAVY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []


WEB_PROCESS = """
import sys
import app
from testing.simulator import WeChatSimulator
built = app.create_app()
simulator = WeChatSimulator("http://bot/wechat", "t", "wx0123456789abcdef")
body, _ = simulator.envelope(simulator.text_xml("user-1", "/help"))
query = simulator.signed_params("user-1")
reply = built.test_client().post("/wechat", query_string=query, data=body)
assert reply.status_code == 200 and b"/help" in reply.data, reply.data
print("openai" in sys.modules)
"""


def test_a_web_process_answering_a_push_never_loads_the_openai_sdk(redis_server: RedisServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "REDIS_", "KB_"))}
    env |= {"WECHAT_TOKEN": "t", "OPENAI_API_KEY": "x", "REDIS_URL": redis_server.url}
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_search_loads_them_when_it_needs_them() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bot.knowledge import index; index.np.zeros(1); print('numpy' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "True", done.stderr[-2000:]
