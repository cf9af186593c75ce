"""Benchmark 3: 1,000 questions in flight — active mode, an LLM that takes 10 s for every answer.

The production stack (gunicorn 2 × 128 threads, WORKER_PROCESSES × WORKER_THREADS job workers),
WeChat's customer-service API faked on loopback: 1,000 users ask at once, WeChat gets `success` at
once, and each answer goes out through the customer-service API when generated. Measured: every user
gets their own answer exactly once, how long the last one takes, and the peak resident memory
(VmHWM) of every process of the web tier and the job workers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.common import APPID, TOKEN, app_env, bad_log_lines, log_dir
from bench.loop import FakeLLM, Loop, Script, WeChat, answer_of, new_openids
from bot.config import Settings
from bot.ops.redis_server import RedisServer, free_port
from testing.fakes.wechat_api import FakeWeChatAPI

SECRET = "bench-secret"
#: WeChat's side sends this many pushes at a time (each is answered `success` at once)
PUSHING = 50
#: the run gives up this long after the last push (a hang must not hold `make bench`)
GIVE_UP = 120.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Params:
    questions: int = 1000
    llm_seconds: float = 10.0
    worker_processes: int = Settings.model_fields["worker_processes"].default
    worker_threads: int = Settings.model_fields["worker_threads"].default


def run(params: Params, logs: Path) -> dict[str, Any]:
    with (
        RedisServer(log_dir(logs, "redis-in-flight")) as redis_server,
        FakeWeChatAPI(appid=APPID, secret=SECRET) as wechat_api,
        Loop() as loop,
        procs.Children(log_dir(logs, "in-flight")) as children,
    ):
        fake = FakeLLM(loop).start()
        port = free_port()
        settings = app_env(port, redis_server.url, fake.base_url)
        settings |= {"wechat_reply_mode": "active", "wechat_appid": APPID, "wechat_secret": SECRET}
        settings |= {"wechat_api_base": wechat_api.url}
        env = procs.clean_env(**settings)
        worker = procs.start_worker(children, env, params.worker_threads, params.worker_processes)
        procs.wait_worker(worker, redis_server.url, params.worker_processes)
        web = children.start("gunicorn", procs.gunicorn_command("app:create_app()"), env)
        procs.wait_http(web, port, "/healthz")
        openids = new_openids("flight", params.questions)
        questions = {openid: f"in flight {openid}" for openid in openids}
        for question in questions.values():
            fake.scripts[question] = Script(delay=params.llm_seconds)
        wechat = WeChat(port, TOKEN, APPID)
        started = time.time()
        acknowledged = loop.run(_push_all(wechat, questions), GIVE_UP)
        pushed = time.time()
        last = _wait_sent(wechat_api, len(openids), pushed + GIVE_UP)
        memory = procs.peak_rss([web, worker])
        summary = _summary(params, openids, questions, wechat_api, fake, acknowledged)
        summary |= {
            "push_seconds": round(pushed - started, 2),
            "all_answered_seconds": round(last - started, 1) if last else None,
            "largest_process_mib": round(max((rss for _, rss in memory), default=0) / MIB, 1),
            "processes": [{"process": name, "peak_mib": round(rss / MIB, 1)} for name, rss in memory],
            "log_errors": {c.name: bad_log_lines(c)[0] for c in (web, worker)},
            "log_evidence": [line for c in (web, worker) for line in bad_log_lines(c)[1]],
        }
        fake.stop()
        return summary


async def _push_all(wechat: WeChat, questions: dict[str, str]) -> int:
    """Every user asks once, PUSHING at a time; how many pushes WeChat got `success` for."""
    gate = asyncio.Semaphore(PUSHING)

    async def one(openid: str, question: str) -> bool:
        async with gate:
            return (await wechat.push(openid, question)).text == ""

    done = await asyncio.gather(*(one(o, q) for o, q in questions.items()))
    return sum(done)


def _wait_sent(api: FakeWeChatAPI, count: int, deadline: float) -> float | None:
    """When the customer-service API had received `count` messages (None: not before the deadline)."""
    while time.time() < deadline:
        if len(api.sent_messages()) >= count:
            return time.time()
        time.sleep(0.05)
    return None


def _summary(
    params: Params,
    openids: list[str],
    questions: dict[str, str],
    api: FakeWeChatAPI,
    fake: FakeLLM,
    acknowledged: int,
) -> dict[str, Any]:
    once = wrong = missing = repeated = 0
    for openid in openids:
        sent = api.sent_texts(openid)
        expected = answer_of(questions[openid])
        if not sent:
            missing += 1
        elif any(text != expected for text in sent):
            wrong += 1
        elif len(sent) > 1:
            repeated += 1
        else:
            once += 1
    llm_calls = sum(len(fake.calls_of(question)) for question in questions.values())
    return {
        "questions": params.questions,
        "llm_seconds": params.llm_seconds,
        "stack": {"worker_processes": params.worker_processes, "worker_threads": params.worker_threads},
        "acknowledged": acknowledged,
        "answered_once": once,
        "missing": missing,
        "wrong": wrong,
        "repeated": repeated,
        "llm_calls": llm_calls,
    }
