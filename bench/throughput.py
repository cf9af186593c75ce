"""Benchmark 1: pushes per second through the real webhook vs a bare Flask endpoint, loaded by wrk.

Both run under gunicorn with deploy/gunicorn.conf.py (gthread, WEB_WORKERS x WEB_THREADS) on the
same port, one after the other, loaded the same way (bench/wrk.py: keep-alive connections, every
request a new signed push — its own nonce and timestamp, a unique MsgId, one of 5,000 senders). The
pushes are `/help` commands: answered at once with real reply XML, through everything a push goes
through (signature, the replay guard, optional AES, XML parsing, de-duplication, statistics, the rate
limit, the command, the plan, the reply XML, the log line) — no LLM and no waiting involved. The
bare app answers `success` without reading anything: the ratio is what the bot's own work costs.

Each measured run also says how much CPU a request cost: the gunicorn processes' (psutil) and
redis-server's (its INFO cpu) CPU time over the run, divided by the requests. On a shared machine this
moves far less than the request rate, which other load on the cores changes at will.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import procs, wrk
from bench.common import AES_KEY, APPID, TOKEN, app_env, bad_log_lines, log_dir
from testing.simulator import MsgIdGenerator

WEBHOOK_APP = "app:create_app()"
BARE_APP = "bench.bare_app:create_app()"


@dataclass(frozen=True)
class Case:
    """One server under one kind of load."""

    name: str  # "bare" or "webhook"
    mode: str  # "plain" or "safe"

    @property
    def label(self) -> str:
        return f"{self.name}/{self.mode}"

    @property
    def expect(self) -> str:
        """What a good answer contains: the bot replies XML (encrypted in safe mode)."""
        if self.name == "bare":
            return "success"
        return "<Encrypt>" if self.mode == "safe" else "<Content>"


@dataclass(frozen=True)
class Load:
    connections: int
    warmup: float
    duration: float
    senders: int = 5000


@dataclass(frozen=True)
class Servers:
    """What the webhook needs around it, already running."""

    port: int
    redis_url: str
    openai_url: str
    logs: Path


def run_case(case: Case, load: Load, servers: Servers, ids: MsgIdGenerator) -> dict[str, Any]:
    """Start the case's gunicorn, warm it up, load it, stop it; the figures plus evidence of errors."""
    env = procs.clean_env(**app_env(servers.port, servers.redis_url, servers.openai_url, case.mode == "safe"))
    app_spec = BARE_APP if case.name == "bare" else WEBHOOK_APP
    workdir = log_dir(servers.logs, case.label.replace("/", "-"))
    with procs.Children(workdir) as children:
        web = children.start("gunicorn", procs.gunicorn_command(app_spec), env)
        pushes = wrk.Pushes(
            servers.port, TOKEN, APPID, AES_KEY if case.mode == "safe" else None, load.senders
        )
        warm, measured = workdir / "warmup.pushes", workdir / "measured.pushes"
        wrk.write_pushes(pushes, wrk.pushes_needed(load.warmup), warm, ids)  # while gunicorn boots
        wrk.write_pushes(pushes, wrk.pushes_needed(load.duration), measured, ids)
        procs.wait_http(web, servers.port, "/healthz" if case.name == "webhook" else "/wechat")
        wrk.run(servers.port, warm, case.expect, load.connections, load.warmup, workdir)
        wrk.wait_a_moment()
        before = cpu_seconds(web, servers.redis_url)
        result = wrk.run(servers.port, measured, case.expect, load.connections, load.duration, workdir)
        used = [
            after - start for start, after in zip(before, cpu_seconds(web, servers.redis_url), strict=True)
        ]
    return _summary(case, result, *bad_log_lines(web)) | _cpu_per_request(used, result.requests)


def cpu_seconds(web: procs.Child, redis_url: str) -> tuple[float, float]:
    """CPU time used so far (user + system) by the gunicorn master and workers, and by redis-server."""
    leader = psutil.Process(web.process.pid)
    web_cpu = 0.0
    for process in [leader, *leader.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        web_cpu += times.user + times.system
    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return web_cpu, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _cpu_per_request(used: list[float], requests: int) -> dict[str, Any]:
    web, redis_cpu = (round(seconds / requests * 1e6) if requests else None for seconds in used)
    return {"web_cpu_us": web, "redis_cpu_us": redis_cpu}


def _summary(case: Case, result: wrk.WrkResult, log_errors: int, evidence: list[str]) -> dict[str, Any]:
    return {
        "case": case.label,
        "server": case.name,
        "mode": case.mode,
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 1),
        "p99_ms": round(result.p99_ms, 1),
        "errors": sum(result.errors.values()),
        "error_kinds": result.errors,
        "bad_bodies": result.bad_bodies,
        "reused": result.reused,
        "log_errors": log_errors,
        "log_evidence": evidence,
    }


def run_all(cases: list[Case], load: Load, servers: Servers) -> list[dict[str, Any]]:
    """Each case in turn; MsgIds never repeat across cases (they share one Redis)."""
    ids = MsgIdGenerator(24_000_000_000_000_000 + time.time_ns() % 10**12 * 1000)
    return [run_case(case, load, servers, ids) for case in cases]


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `ratio` = webhook rps / bare rps of the same mode (or of any bare run)."""
    bare = {r["mode"]: r["rps"] for r in results if r["server"] == "bare"}
    fallback = next(iter(bare.values()), None)
    for row in results:
        reference = bare.get(row["mode"], fallback)
        row["ratio"] = round(row["rps"] / reference, 3) if reference else None
    return results
