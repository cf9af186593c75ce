"""The results: one JSON file for machines, Markdown for people — the summary table (what the README
promises, as ratios and bounds) and the detailed tables under it; `make bench` writes the Markdown
into README.md between the BEGIN/END markers of the Benchmarks section."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin (written by `make bench`: bench/run.py) -->"
END = "<!-- bench:end -->"


def _fmt(value: Any, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def _attempts(found: dict[str, int]) -> str:
    return " / ".join(str(found.get(str(n), 0)) for n in (1, 2, 3))


def summary_table(results: dict[str, Any]) -> list[str]:
    """One row per promise: what was measured in this run, and the goal it is held to."""
    rows = ["| What | This run | Goal |", "|---|---|---|"]
    plain = {row["server"]: row for row in results.get("throughput", []) if row["mode"] == "plain"}
    if "webhook" in plain and "bare" in plain:
        web, bare = plain["webhook"], plain["bare"]
        rows.append(
            f"| webhook throughput vs bare Flask (plain, signed `/help`, real reply XML) "
            f"| **{_fmt(web.get('ratio'))}×** ({web['rps']:.0f} vs {bare['rps']:.0f} req/s; "
            f"p50 {web['p50_ms']} vs {bare['p50_ms']} ms) | ≥ 0.5× |"
        )
    latency = results.get("latency") or {}
    if pickup := latency.get("pickup"):
        rows.append(
            f"| push sent → LLM request received (queue pick-up, one user at a time, "
            f"{pickup['count']} pushes) "
            f"| p50 {_fmt(pickup['pickup_p50_ms'], ' ms')}, **p99 {_fmt(pickup['pickup_p99_ms'], ' ms')}**, "
            f"max {_fmt(pickup['pickup_max_ms'], ' ms')} | p99 ≤ 20 ms |"
        )
    if ready := latency.get("ready_at"):
        rows.append(
            f"| LLM takes {ready['llm_seconds']} s ({ready['users']} users): shown on attempt 1 / 2 / 3 "
            f"| **{_attempts(ready['on_attempt'])}**, shown {_fmt(ready['shown_p50_s'], ' s')} "
            "after the push "
            f"(max {_fmt(ready['shown_max_s'], ' s')}) | attempt 1 |"
        )
    if together := latency.get("together"):
        rows.append(
            f"| {together['users']} users, all answers finishing in the same instant: LLM's last byte → "
            f"reply read by WeChat | **median {_fmt(together['delay_p50_ms'], ' ms')}, "
            f"p99 {_fmt(together['delay_p99_ms'], ' ms')}**{_held_floor(latency.get('held'))} "
            "| median ≤ 15 ms, p99 ≤ 50 ms |"
        )
    if flight := results.get("in_flight"):
        rows.append(
            f"| {flight['questions']:,} questions in flight (active mode, {flight['llm_seconds']:g} s LLM) "
            f"| **{flight['answered_once']}/{flight['questions']}** answered once, "
            f"{_fmt(flight['all_answered_seconds'], ' s')}, "
            f"largest process {flight['largest_process_mib']} MiB "
            f"| all once, no process above 120 MiB |"
        )
    return rows


def _held_floor(held: dict[str, Any] | None) -> str:
    """The together row's baseline in the same run: bare Flask replying to as many held requests at once."""
    if not held:
        return ""
    return (
        f"; bare Flask under the same gunicorn, {held['users']} held requests released at once: "
        f"median {_fmt(held['delay_p50_ms'], ' ms')}, p99 {_fmt(held['delay_p99_ms'], ' ms')}"
    )


def throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| Server (mode) | req/s | vs bare | p50 | p99 | CPU per request: web + Redis "
        "| errors + bad bodies | reused pushes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        errors = row["errors"] + row["bad_bodies"]
        lines.append(
            f"| {row['server']} ({row['mode']}) | {row['rps']:.0f} | {_fmt(row.get('ratio'))} "
            f"| {_fmt(row['p50_ms'], ' ms')} | {_fmt(row['p99_ms'], ' ms')} | {_cpu(row)} | {errors} "
            f"| {row.get('reused', 0)} |"
        )
    return lines


def _cpu(row: dict[str, Any]) -> str:
    """The CPU a request cost the web processes and Redis (µs; — in results from before it was measured)."""
    web, redis_cpu = row.get("web_cpu_us"), row.get("redis_cpu_us")
    if web is None or redis_cpu is None:
        return "—"
    return f"{web} + {redis_cpu} µs"


def delay_table(latency: dict[str, Any]) -> list[str]:
    lines = [
        "| Users at once | LLM time | answered on attempt 1 / 2 / 3 | failures | delay p50 | p99 | max |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    cases = [("spread", "{low}–{high} s, spread"), ("together", "all finish in the same instant")]
    for name, label in cases:
        case = latency.get(name)
        if not case:
            continue
        low, high = case.get("llm_seconds", [None, None])
        lines.append(
            f"| {case['users']} | {label.format(low=low, high=high)} | {_attempts(case['on_attempt'])} "
            f"| {case['failures']} | {_fmt(case['delay_p50_ms'], ' ms')} "
            f"| {_fmt(case['delay_p99_ms'], ' ms')} "
            f"| {_fmt(case['delay_max_ms'], ' ms')} |"
        )
    if held := latency.get("held"):
        lines.append(
            f"| {held['users']} | none: bare Flask, held requests released at once (the floor) "
            f"| {held['answered']} / — / — | {held['users'] - held['answered']} "
            f"| {_fmt(held['delay_p50_ms'], ' ms')} | {_fmt(held['delay_p99_ms'], ' ms')} "
            f"| {_fmt(held['delay_max_ms'], ' ms')} |"
        )
    return lines


def cpu_note(latency: dict[str, Any], cores: int) -> list[str]:
    """What bounds the together case: the CPU each group of processes used from the release to the last
    reply, per answer; all of it shares the machine's cores, so the last reply cannot leave sooner. The
    same for the bare baseline, whose figure is the floor no work of the bot's can go under."""
    lines = []
    for name, label in (("together", "the bot"), ("held", "bare Flask")):
        case = latency.get(name) or {}
        used = case.get("cpu_ms_per_answer")
        if not used:
            continue
        total = sum(used.values())
        floor = total * case["users"] / cores
        parts = ", ".join(f"{group} {ms_:.2f} ms" for group, ms_ in used.items())
        lines += [
            "",
            f"CPU from the release to the last reply, per answer ({label}): {parts} — {total:.2f} ms in "
            f"all, so {case['users']} answers keep {cores} cores busy for at least {floor:.0f} ms, in any "
            "order.",
        ]
    return lines


def memory_table(flight: dict[str, Any]) -> list[str]:
    lines = ["| Process | peak resident memory |", "|---|---:|"]
    lines += [f"| {row['process']} | {row['peak_mib']} MiB |" for row in flight.get("processes", [])]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The summary, then the details, with the conditions they were measured under."""
    meta = results["meta"]
    load = meta["throughput_load"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']} ({meta['nproc']} cores, Python {meta['python']}; "
        f"load average {meta['loadavg_1min_before']} before the run, {meta.get('loadavg_1min_after', '—')} "
        f"after), everything on 127.0.0.1, `make bench` in {meta.get('seconds', '—')} s. "
        f"Production settings: gunicorn {meta['web_workers']} × {meta['web_threads']} threads, "
        f"{meta['worker_processes']} × {meta['worker_threads']} job threads, WeChat's 5 s × 3 attempts, "
        f"reply margin {meta['reply_margin']} s.",
        "",
        *summary_table(results),
    ]
    if results.get("throughput"):
        lines += [
            "",
            f"**Webhook throughput** — wrk, {load['connections']} keep-alive connections for "
            f"{load['duration']:g} s after {load['warmup']:g} s of warm-up; every request a new push "
            f"signed with its own nonce and timestamp (the replay guard on), a unique MsgId, one of "
            f"{load['senders']:,} senders, `/help` answered with reply XML (encrypted in safe mode); "
            "the bare app is Flask answering `success` under the same gunicorn, first and last. CPU per "
            "request: the gunicorn processes' and redis-server's CPU time over the measured run, divided "
            "by its requests (steadier than req/s on a shared machine).",
            "",
            *throughput_table(results["throughput"]),
        ]
    if latency := results.get("latency"):
        lines += [
            "",
            "**Reply delay** — LLM's last byte (the fake LLM's clock) → the reply read in full by WeChat's "
            "side (the same clock), 100 users pushing at the same moment:",
            "",
            *delay_table(latency),
            *cpu_note(latency, results["meta"]["nproc"]),
        ]
    if flight := results.get("in_flight"):
        lines += [
            "",
            f"**{flight['questions']:,} questions in flight** — pushed in {flight['push_seconds']} s "
            f"({flight['acknowledged']} acknowledged at once); {flight['answered_once']} answered once, "
            f"{flight['missing']} missing, {flight['repeated']} repeated, {flight['wrong']} wrong; "
            f"{flight['llm_calls']} LLM calls:",
            "",
            *memory_table(flight),
        ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path, text: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(text)
    return json_path, md_path


def into_readme(readme: Path, text: str) -> bool:
    """Replace what is between the markers with `text`; False when the README has no markers."""
    found = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(found):
        return False
    block = f"{BEGIN}\n{text}{END}"
    readme.write_text(pattern.sub(lambda _: block, found, count=1), encoding="utf-8")
    return True
