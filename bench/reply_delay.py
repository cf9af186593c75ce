"""Benchmark 2: how long after the LLM finishes does each of 100 simultaneous users get the answer?

The real stack: gunicorn (deploy/gunicorn.conf.py) + one Dramatiq worker process + Redis + a fake
LLM that takes 0.3-3 s per answer. 100 WeChatSimulator users send one question each at the same
moment, with WeChat's real 5 s attempt timeout and 3 attempts. For each user,
delay = (simulator received the reply) - (the LLM sent the answer's last byte), on one wall clock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import procs
from bench.common import APPID, TOKEN, app_env, bad_log_lines, log_dir
from bench.fake_llm import TimedFakeOpenAI, expected_answer
from bench.stats import ms, percentile
from bot.ops.redis_server import RedisServer, free_port
from testing.simulator import Delivery, WeChatSimulator

ATTEMPT_TIMEOUT = 5.0  # WeChat's, and the app's default WECHAT_ATTEMPT_TIMEOUT
ATTEMPTS = 3
WORKER_READY_TIMEOUT = 30.0
WARMUP_USERS = 4


@dataclass(frozen=True)
class Outcome:
    """One user's question and what the simulator saw."""

    user: str
    question: str
    delivery: Delivery | None  # None: the push did not even finish (a bench bug)
    received_at: float  # wall time when push() returned


@dataclass(frozen=True)
class Params:
    users: int = 100
    llm_low: float = 0.3
    llm_high: float = 3.0
    worker_threads: int = 128


def run(params: Params, logs: Path) -> dict[str, Any]:
    """Start the whole stack, send the questions, stop everything; the per-user figures."""
    with (
        RedisServer(log_dir(logs, "redis-delay")) as redis_server,
        TimedFakeOpenAI(params.llm_low, params.llm_high) as fake,
        procs.Children(log_dir(logs, "reply-delay")) as children,
    ):
        port = free_port()
        env = procs.clean_env(**app_env(port, redis_server.url, fake.base_url))
        worker = procs.start_worker(children, env, params.worker_threads)
        _wait_worker(worker, redis_server.url)
        web = children.start("gunicorn", procs.gunicorn_command("app:create_app()"), env)
        procs.wait_http(web, port, "/healthz")
        url = f"http://127.0.0.1:{port}/wechat"
        warm = ask_all(url, [f"warmup-{i}" for i in range(WARMUP_USERS)])
        outcomes = ask_all(url, [f"bench-user-{i:03d}" for i in range(params.users)])
        summary = summarize(outcomes, fake, params)
        summary["warmup_failures"] = sum(
            1 for o in warm if o.delivery is None or o.delivery.user_sees_failure
        )
        summary["log_errors"] = {c.name: bad_log_lines(c)[0] for c in (web, worker)}
        summary["log_evidence"] = [line for c in (web, worker) for line in bad_log_lines(c)[1]]
        return summary


def _wait_worker(worker: procs.Child, redis_url: str) -> None:
    """The worker is ready once its consumer has sent a heartbeat to the broker (and so fetches)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"the worker exited during startup:\n{worker.log_text()[-3000:]}")
            if client.zcard("dramatiq:__heartbeats__") > 0:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"the worker did not start within {WORKER_READY_TIMEOUT:.0f} s")


def ask_all(url: str, users: list[str]) -> list[Outcome]:
    """Every user asks one question, all released at the same moment by a barrier."""
    simulator = WeChatSimulator(url, TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT, attempts=ATTEMPTS)
    questions = {user: f"请回答 {user} 的问题" for user in users}
    messages = {user: simulator.text_xml(user, questions[user]) for user in users}
    barrier = threading.Barrier(len(users))
    results: dict[str, Outcome] = {}

    def ask(user: str) -> None:
        barrier.wait(timeout=10)
        delivery = simulator.push(messages[user])
        results[user] = Outcome(user, questions[user], delivery, time.time())

    threads = [threading.Thread(target=ask, args=(user,), daemon=True) for user in users]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + ATTEMPT_TIMEOUT * ATTEMPTS + 15
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    return [results.get(user, Outcome(user, questions[user], None, time.time())) for user in users]


def summarize(outcomes: list[Outcome], fake: TimedFakeOpenAI, params: Params) -> dict[str, Any]:
    delays: list[tuple[float, str]] = []
    attempts = {1: 0, 2: 0, 3: 0}
    problems: list[str] = []
    for outcome in outcomes:
        delay, attempt, problem = _judge(outcome, fake)
        if delay is not None:
            delays.append((delay, outcome.user))
        if attempt is not None:
            attempts[attempt] = attempts.get(attempt, 0) + 1
        if problem:
            problems.append(f"{outcome.user}: {problem}")
    seconds = [delay for delay, _ in delays]
    return {
        "users": len(outcomes),
        "llm_seconds": [params.llm_low, params.llm_high],
        "answered": len(delays),
        "answered_on_attempt": attempts,
        "failures": sum(1 for o in outcomes if o.delivery is None or o.delivery.user_sees_failure),
        "delay_p50_ms": ms(percentile(seconds, 50)),
        "delay_p95_ms": ms(percentile(seconds, 95)),
        "delay_max_ms": ms(max(seconds, default=None)),
        "delay_min_ms": ms(min(seconds, default=None)),
        "slowest": [{"user": user, "delay_ms": ms(delay)} for delay, user in sorted(delays)[-5:][::-1]],
        "problems": problems,
    }


def _judge(outcome: Outcome, fake: TimedFakeOpenAI) -> tuple[float | None, int | None, str | None]:
    """(delay, attempt that carried the answer, problem) for one user."""
    delivery = outcome.delivery
    if delivery is None:
        return None, None, "the push did not finish"
    if delivery.user_sees_failure:
        reasons = ", ".join(a.problem or str(a.status) for a in delivery.attempts)
        return None, None, f"saw a failure ({reasons})"
    answer = expected_answer(outcome.question)
    text = delivery.text or ""
    if answer not in text:
        return None, len(delivery.attempts), f"reply is not its answer: {text[:60]!r}"
    finished = fake.finished_at(answer)
    if not finished:
        return None, len(delivery.attempts), "the LLM never finished its answer"
    problem = f"the LLM answered it {len(finished)} times" if len(finished) > 1 else None
    return outcome.received_at - finished[-1], len(delivery.attempts), problem
