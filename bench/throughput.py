"""Benchmark 1: pushes per second through the real webhook vs a bare Flask endpoint.

Both run under gunicorn with deploy/gunicorn.conf.py (gthread, WEB_WORKERS x WEB_THREADS) on the
same port, one after the other, loaded by the same generator. The pushes are `/help` commands:
answered at once, but through everything a push goes through (signature, optional AES, XML
parsing, de-duplication in Redis, the command, the reply XML) — no LLM and no waiting involved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.common import AES_KEY, APPID, TOKEN, app_env, bad_log_lines, log_dir
from bench.load import LoadResult, LoadSpec, run_load
from bench.stats import ms, percentile

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
    def expect(self) -> bytes:
        """What a good answer contains: the bot replies XML (encrypted in safe mode)."""
        if self.name == "bare":
            return b"success"
        return b"<Encrypt>" if self.mode == "safe" else b"<Content>"


@dataclass(frozen=True)
class Load:
    connections: int
    warmup: float
    duration: float
    processes: int


@dataclass(frozen=True)
class Servers:
    """What the webhook needs around it, already running."""

    port: int
    redis_url: str
    openai_url: str
    logs: Path


def run_case(case: Case, load: Load, servers: Servers, msg_id_start: int) -> dict[str, Any]:
    """Start the case's gunicorn, load it, stop it; the figures plus evidence of errors."""
    env = procs.clean_env(**app_env(servers.port, servers.redis_url, servers.openai_url, case.mode == "safe"))
    app_spec = BARE_APP if case.name == "bare" else WEBHOOK_APP
    with procs.Children(log_dir(servers.logs, case.label.replace("/", "-"))) as children:
        web = children.start("gunicorn", procs.gunicorn_command(app_spec), env)
        procs.wait_http(web, servers.port, "/healthz" if case.name == "webhook" else "/wechat")
        result = run_load(_spec(case, load, servers.port, msg_id_start), load.processes)
    return _summary(case, result, *bad_log_lines(web))


def _spec(case: Case, load: Load, port: int, msg_id_start: int) -> LoadSpec:
    return LoadSpec(
        port=port,
        token=TOKEN,
        appid=APPID,
        aes_key=AES_KEY if case.mode == "safe" else None,
        connections=load.connections,
        warmup=load.warmup,
        duration=load.duration,
        expect=case.expect,
        msg_id_start=msg_id_start,
    )


def _summary(case: Case, result: LoadResult, log_errors: int, evidence: list[str]) -> dict[str, Any]:
    return {
        "case": case.label,
        "server": case.name,
        "mode": case.mode,
        "requests": len(result.latencies),
        "rps": round(len(result.latencies) / result.duration, 1),
        "p50_ms": ms(percentile(result.latencies, 50)),
        "p99_ms": ms(percentile(result.latencies, 99)),
        "errors": sum(result.errors.values()),
        "error_kinds": dict(result.errors),
        "bad_bodies": result.bad_bodies,
        "log_errors": log_errors,
        "log_evidence": evidence,
    }


def run_all(cases: list[Case], load: Load, servers: Servers) -> list[dict[str, Any]]:
    """Each case in turn; MsgIds never repeat across cases (they share one Redis)."""
    base = 24_000_000_000_000_000 + time.time_ns() % 10**12 * 1000
    return [run_case(case, load, servers, base + i * 10**11) for i, case in enumerate(cases)]


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `ratio` = webhook rps / bare rps of the same mode (or of any bare run)."""
    bare = {r["mode"]: r["rps"] for r in results if r["server"] == "bare"}
    fallback = next(iter(bare.values()), None)
    for row in results:
        reference = bare.get(row["mode"], fallback)
        row["ratio"] = round(row["rps"] / reference, 3) if reference else None
    return results
