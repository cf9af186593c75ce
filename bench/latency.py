"""Benchmark 2: where WeChat's clock is ticking — pick-up, the 4.3 s answer, 100 answers at once.

One stack as in production (gunicorn with deploy/gunicorn.conf.py, WORKER_PROCESSES × WORKER_THREADS
Dramatiq job workers started as `make run` starts them, Redis), a fake LLM and WeChat's side on one
asyncio loop (bench/loop.py), WeChat's real timing (5 s attempts, 3 attempts, reply margin 0.5 s):

* pick-up — one user at a time: the push sent → the LLM request received (the web tier's handling,
  the queue, the worker starting the job and building the prompt);
* ready at 4.3 s — the LLM takes 4.3 s: which attempt shows the answer, and when;
* spread — 100 users at once, answers ready over 0.3–3 s: LLM's last byte → reply read by WeChat;
* together — 100 users at once, all 100 answers finishing in the same instant (the fake holds every
  request until all have arrived, then ends them together): LLM's last byte → reply read by WeChat;
* held (bare) — the together case's floor, after the stack is stopped: a bare Flask app under the same
  gunicorn (bench/held_app.py) holds 100 requests until a notice each over Redis pub/sub, then replies;
  the notices sent → the replies read.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import held_app, procs
from bench.common import APPID, TOKEN, app_env, bad_log_lines, log_dir
from bench.loop import Delivery, FakeLLM, Loop, Script, WeChat, answer_of, new_openids, post
from bench.stats import ms, percentile
from bot.config import Settings
from bot.ops.redis_server import RedisServer, free_port

#: WeChat's, and the app's defaults
ATTEMPT_TIMEOUT = 5.0
ATTEMPTS = 3
REPLY_MARGIN: float = Settings.model_fields["wechat_reply_margin"].default
#: the together case holds every request until all have arrived, then this long more (a quiet stack)
SETTLE = 0.3


@dataclass(frozen=True)
class Params:
    #: 200: a nearest-rank p99 of 50 pushes was their slowest one, a single hiccup of the machine
    pickups: int = 200
    ready_at: float = 4.3
    ready_users: int = 10
    users: int = 100
    spread: tuple[float, float] = (0.3, 3.0)
    worker_processes: int = Settings.model_fields["worker_processes"].default
    worker_threads: int = Settings.model_fields["worker_threads"].default


def run(params: Params, logs: Path) -> dict[str, Any]:
    """Start the stack, run the four cases, stop everything; their figures."""
    with (
        RedisServer(log_dir(logs, "redis-latency")) as redis_server,
        Loop() as loop,
        procs.Children(log_dir(logs, "latency")) as children,
    ):
        fake = FakeLLM(loop).start()
        port = free_port()
        env = procs.clean_env(**app_env(port, redis_server.url, fake.base_url))
        worker = procs.start_worker(children, env, params.worker_threads, params.worker_processes)
        procs.wait_worker(worker, redis_server.url, params.worker_processes)
        web = children.start("gunicorn", procs.gunicorn_command("app:create_app()"), env)
        procs.wait_http(web, port, "/healthz")
        wechat = WeChat(port, TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT, attempts=ATTEMPTS)
        groups = {
            "web": procs.tree(web.process.pid),
            "job workers": procs.tree(worker.process.pid),
            "Redis": procs.tree(redis_server.pid),
            "bench": [os.getpid()],  # its loop: WeChat's side and the fake LLM
        }
        results = {
            "stack": {"worker_processes": params.worker_processes, "worker_threads": params.worker_threads},
            "warmup": _warm_up(loop, wechat, fake),
            "pickup": pickup(loop, wechat, fake, params.pickups),
            "ready_at": ready_at(loop, wechat, fake, params.ready_at, params.ready_users),
            "spread": spread(loop, wechat, fake, params.users, params.spread),
            "together": together(loop, wechat, fake, params.users, lambda: procs.cpu_seconds(groups)),
        }
        results["log_errors"] = {c.name: bad_log_lines(c)[0] for c in (web, worker)}
        results["log_evidence"] = [line for c in (web, worker) for line in bad_log_lines(c)[1]]
        fake.stop()
        for child in (web, worker):  # the baseline has the machine to itself, as the stack had
            child.stop()
        results["held"] = held(loop, children, redis_server, params.users)
        return results


def held(loop: Loop, children: procs.Children, redis_server: RedisServer, users: int) -> dict[str, Any]:
    """The together case's baseline: bare Flask under the same gunicorn holds `users` requests, the bench
    releases them all at once (one pipeline of `held:<openid>` notices), each reply read → its delay."""
    port, redis_url = free_port(), redis_server.url
    env = procs.clean_env(redis_url=redis_url, port=str(port), host="127.0.0.1")
    app = children.start("gunicorn-held", procs.gunicorn_command("bench.held_app:create_app()"), env)
    procs.wait_http(app, port, "/healthz")
    client = redis.Redis.from_url(redis_url)
    # as the together case counts them (Redis carries the notices here too)
    groups = {
        "web": procs.tree(app.process.pid),
        "Redis": procs.tree(redis_server.pid),
        "bench": [os.getpid()],
    }
    try:
        held_round(loop, client, port, users, None)  # warm-up: every thread and connection made
        result = held_round(loop, client, port, users, lambda: procs.cpu_seconds(groups))
    finally:
        client.close()
        app.stop()
    result["log_errors"] = bad_log_lines(app)[0]
    return result


def held_round(
    loop: Loop, client: redis.Redis, port: int, users: int, cpu: Callable[[], dict[str, float]] | None
) -> dict[str, Any]:
    openids = new_openids("held", users)
    used: dict[str, float] = {}
    client.delete(held_app.HELD)

    async def scenario() -> tuple[float, list[tuple[int, bytes, float]]]:
        async def one(openid: str) -> tuple[int, bytes, float]:
            status, body = await post(port, f"/wechat?openid={openid}", b"")
            return status, body, time.time()

        replies = asyncio.gather(*(one(openid) for openid in openids))
        deadline = time.time() + ATTEMPT_TIMEOUT
        while int(client.get(held_app.HELD) or 0) < users and time.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE)
        before = cpu() if cpu is not None else {}
        pipe = client.pipeline(transaction=False)
        for openid in openids:
            pipe.publish(held_app.PREFIX + openid, "1")
        released = time.time()
        pipe.execute()
        read = list(await replies)
        after = cpu() if cpu is not None else {}
        used.update({name: after[name] - before.get(name, 0.0) for name in after})
        return released, read

    released, read = loop.run(scenario(), ATTEMPT_TIMEOUT + held_app.HOLD_SECONDS)
    delays = [received - released for status, body, received in read if status == 200 and b"held " in body]
    result: dict[str, Any] = {"users": users, "answered": len(delays), **_figures(delays, "delay")}
    result["problems"] = [f"{status}: {body[:40]!r}" for status, body, _ in read if b"held " not in body][:5]
    if used:
        result["cpu_ms_per_answer"] = _per_answer(used, users)
    return result


def _warm_up(loop: Loop, wechat: WeChat, fake: FakeLLM) -> int:
    """A few questions through every process (imports, connections, the first job); failures."""
    users = new_openids("warm", 8)
    deliveries = loop.run(_gather(wechat, users, [f"warm-up {u}" for u in users]), 60)
    return sum(1 for d in deliveries if d.text != answer_of(d.question))


def pickup(loop: Loop, wechat: WeChat, fake: FakeLLM, count: int) -> dict[str, Any]:
    """One user at a time, an answer the LLM gives at once, idle gaps of 50–300 ms between them (the
    workers idle as they would between real questions)."""
    rng = random.Random(7)
    gaps, problems = [], []
    for openid in new_openids("pickup", count):
        question = f"pick-up {openid}"
        delivery = loop.run(wechat.push(openid, question), ATTEMPT_TIMEOUT * ATTEMPTS + 10)
        calls = fake.calls_of(question)
        if delivery.text != answer_of(question) or len(calls) != 1:
            problems.append(_problem(delivery, calls=len(calls)))
        if calls:
            gaps.append(calls[0].arrived - delivery.sent)
        time.sleep(rng.uniform(0.05, 0.3))
    return {"count": count, **_figures(gaps, "pickup"), "problems": problems}


def ready_at(loop: Loop, wechat: WeChat, fake: FakeLLM, seconds: float, users: int) -> dict[str, Any]:
    """The LLM takes `seconds` for each answer; users ask 0.4 s apart (their generations overlap)."""
    openids = new_openids("ready", users)
    questions = [f"ready at {seconds} {openid}" for openid in openids]
    for question in questions:
        fake.scripts[question] = Script(delay=seconds)

    async def staggered() -> list[Delivery]:
        async def one(index: int) -> Delivery:
            await asyncio.sleep(index * 0.4)
            return await wechat.push(openids[index], questions[index])

        return list(await asyncio.gather(*(one(i) for i in range(users))))

    deliveries = loop.run(staggered(), users * 0.4 + ATTEMPT_TIMEOUT * ATTEMPTS + 10)
    shown = [
        d.received - d.sent for d in deliveries if d.received is not None and d.text == answer_of(d.question)
    ]
    return {
        "llm_seconds": seconds,
        "users": users,
        "on_attempt": _attempts(deliveries),
        "shown_p50_s": _seconds(percentile(shown, 50)),
        "shown_max_s": _seconds(max(shown, default=None)),
        "problems": [_problem(d) for d in deliveries if d.text != answer_of(d.question)],
    }


def spread(
    loop: Loop, wechat: WeChat, fake: FakeLLM, users: int, seconds: tuple[float, float]
) -> dict[str, Any]:
    """`users` ask at the same moment; each answer takes a random time in `seconds`."""
    rng = random.Random(11)
    openids = new_openids("spread", users)
    questions = [f"spread {openid}" for openid in openids]
    for question in questions:
        fake.scripts[question] = Script(delay=rng.uniform(*seconds))
    deliveries = loop.run(_gather(wechat, openids, questions), ATTEMPT_TIMEOUT * ATTEMPTS + 15)
    return {"users": users, "llm_seconds": list(seconds), **_delays(deliveries, fake)}


def together(
    loop: Loop, wechat: WeChat, fake: FakeLLM, users: int, cpu: Callable[[], dict[str, float]] | None = None
) -> dict[str, Any]:
    """`users` ask at the same moment; the fake answers none until every request has reached it, then
    ends all of them in the same instant (bounded: the answers must still fit in attempt 1). `cpu`: the
    CPU seconds each group of processes has used so far; the CPU they use from the release to the last
    reply, per answer, shows what bounds the delays (every answer's end is CPU on the same two cores)."""
    openids = new_openids("together", users)
    questions = [f"together {openid}" for openid in openids]
    used: dict[str, float] = {}

    async def scenario() -> list[Delivery]:
        release = asyncio.Event()
        for question in questions:
            fake.scripts[question] = Script(release=release)
        pushes = asyncio.gather(*(wechat.push(o, q) for o, q in zip(openids, questions, strict=True)))
        deadline = time.time() + ATTEMPT_TIMEOUT - REPLY_MARGIN - 1.0
        while sum(len(fake.calls_of(q)) for q in questions) < users and time.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE)
        before = cpu() if cpu is not None else {}
        release.set()
        delivered = list(await pushes)
        after = cpu() if cpu is not None else {}
        used.update({name: after[name] - before.get(name, 0.0) for name in after})
        return delivered

    deliveries = loop.run(scenario(), ATTEMPT_TIMEOUT * ATTEMPTS + 15)
    finished = [call.finished for q in questions for call in fake.calls_of(q) if call.finished]
    result = {"users": users, **_delays(deliveries, fake)}
    result["finish_spread_ms"] = ms(max(finished) - min(finished)) if finished else None
    if used:
        result["cpu_ms_per_answer"] = _per_answer(used, users)
    return result


def _per_answer(used: dict[str, float], users: int) -> dict[str, float]:
    """CPU seconds per group → milliseconds per answer."""
    return {name: round(seconds * 1000 / users, 2) for name, seconds in used.items()}


async def _gather(wechat: WeChat, openids: list[str], questions: list[str]) -> list[Delivery]:
    return list(await asyncio.gather(*(wechat.push(o, q) for o, q in zip(openids, questions, strict=True))))


def _delays(deliveries: list[Delivery], fake: FakeLLM) -> dict[str, Any]:
    """LLM's last byte → reply read by WeChat, per user; which attempt carried it; what went wrong."""
    delays, problems = [], []
    for delivery in deliveries:
        calls = fake.calls_of(delivery.question)
        finished = [call.finished for call in calls if call.finished]
        if delivery.text != answer_of(delivery.question) or len(calls) != 1 or not finished:
            problems.append(_problem(delivery, calls=len(calls)))
            continue
        assert delivery.received is not None
        delays.append(delivery.received - finished[0])
    return {
        "answered": len(delays),
        "on_attempt": _attempts(deliveries),
        "failures": sum(1 for d in deliveries if d.attempt is None),
        **_figures(delays, "delay"),
        "problems": problems,
    }


def _figures(values: list[float], name: str) -> dict[str, float | None]:
    return {
        f"{name}_p50_ms": ms(percentile(values, 50)),
        f"{name}_p99_ms": ms(percentile(values, 99)),
        f"{name}_max_ms": ms(max(values, default=None)),
    }


def _attempts(deliveries: list[Delivery]) -> dict[str, int]:
    found = {"1": 0, "2": 0, "3": 0}
    for delivery in deliveries:
        if delivery.attempt is not None:
            found[str(delivery.attempt)] += 1
    return found


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _problem(delivery: Delivery, calls: int = 1) -> str:
    text = (delivery.text or "")[:40]
    extra = f", {calls} LLM calls" if calls != 1 else ""
    return f"{delivery.openid}: attempt {delivery.attempt}, reply {text!r}{extra} {delivery.problems[:2]}"
