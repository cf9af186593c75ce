"""The results: one JSON file for machines, one Markdown table ready to paste into the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| Server (mode) | req/s | vs bare | p50 | p99 | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        errors = row["errors"] + row["bad_bodies"]
        lines.append(
            f"| {row['server']} ({row['mode']}) | {row['rps']:.0f} | {_fmt(row.get('ratio'))} "
            f"| {_fmt(row['p50_ms'], ' ms')} | {_fmt(row['p99_ms'], ' ms')} | {errors} |"
        )
    return lines


def delay_table(delay: dict[str, Any]) -> list[str]:
    low, high = delay["llm_seconds"]
    by_attempt = delay["answered_on_attempt"]
    attempts = " / ".join(str(by_attempt.get(n, by_attempt.get(str(n), 0))) for n in (1, 2, 3))
    return [
        "| Users at once | LLM time | answered on attempt 1 / 2 / 3 | failures | delay p50 | p95 | max |",
        "|---:|---|---|---:|---:|---:|---:|",
        f"| {delay['users']} | {low}–{high} s | {attempts} | {delay['failures']} "
        f"| {_fmt(delay['delay_p50_ms'], ' ms')} | {_fmt(delay['delay_p95_ms'], ' ms')} "
        f"| {_fmt(delay['delay_max_ms'], ' ms')} |",
    ]


def markdown(results: dict[str, Any]) -> str:
    """Both tables with the conditions they were measured under."""
    meta = results["meta"]
    load = meta["throughput_load"]
    lines = [
        f"Benchmarks of {meta['date']} on {meta['nproc']} cores (Python {meta['python']}, load average "
        f"{meta['loadavg_1min_before']} before the run), everything on 127.0.0.1, `make bench`.",
        "",
        f"**Webhook throughput** — gunicorn gthread ({meta['web_workers']} workers × {meta['web_threads']} "
        f"threads, deploy/gunicorn.conf.py), {load['connections']} keep-alive connections for "
        f"{load['duration']:g} s after {load['warmup']:g} s warm-up; signed `/help` pushes, "
        "each with a new MsgId (the bare app: Flask returning `success`).",
        "",
        *throughput_table(results["throughput"]),
    ]
    if results.get("reply_delay"):
        lines += [
            "",
            "**Reply delay** — time from the LLM's last byte to the reply reaching WeChat, gunicorn + "
            "1 Dramatiq worker process (128 threads), WeChat's 5 s attempt timeout:",
            "",
            *delay_table(results["reply_delay"]),
        ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
