"""`make bench`: run the benchmarks, print the tables, write bench/results/latest.{json,md} and the
Benchmarks section of README.md (between its markers; --no-readme leaves it alone).

1. throughput — wrk against the webhook and a bare Flask app under the same gunicorn (bench/throughput.py);
2. latency — queue pick-up, an answer the LLM takes 4.3 s for, 100 users at once (bench/latency.py);
3. in flight — 1,000 questions, active mode, a 10 s LLM, peak memory (bench/in_flight.py);
4. FastChat overhead, when the local model is already prepared (`make local-llm`, about 2 minutes
   once) or with --fastchat, which prepares it first (bench/fastchat_overhead.py).

Everything listens on 127.0.0.1; every child process is killed (as a process group) when its
phase ends, on errors, on Ctrl-C and on SIGTERM, and an alarm ends a run that overstays.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import fastchat_overhead, in_flight, latency, procs, report, throughput, wrk
from bench.common import log_dir
from bot.config import Settings
from bot.ops.local_llm import LocalCluster, LocalLLMError, data_dir_from_env
from bot.ops.redis_server import RedisServer, free_port

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent.parent / "README.md"
#: the whole run is ended (cleanly, through SystemExit) after this many seconds
HARD_LIMIT = 420


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before that")
    parser.add_argument("--users", type=int, default=100, help="simultaneous users (reply delay)")
    parser.add_argument(
        "--pickups", type=int, default=latency.Params.pickups, help="pushes of the pick-up measure"
    )
    parser.add_argument("--in-flight", type=int, default=1000, help="questions in flight (active mode)")
    parser.add_argument("--no-safe", action="store_true", help="skip the AES (safe mode) variant")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the throughput benchmark")
    parser.add_argument("--skip-latency", action="store_true", help="skip the latency benchmarks")
    parser.add_argument(
        "--skip-in-flight", action="store_true", help="skip the questions-in-flight benchmark"
    )
    parser.add_argument("--no-readme", action="store_true", help="do not write the figures into README.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs; print where")
    fastchat = parser.add_mutually_exclusive_group()
    fastchat.add_argument(
        "--fastchat",
        action="store_true",
        help="run the FastChat overhead benchmark (prepare the model if needed)",
    )
    fastchat.add_argument("--skip-fastchat", action="store_true", help="skip the FastChat overhead benchmark")
    parser.add_argument("--fastchat-data-dir", type=Path, default=None, help="default: DATA_DIR or ./data")
    return parser.parse_args(argv)


def cases(args: argparse.Namespace) -> list[throughput.Case]:
    """Bare first and last: a drift of the machine between them shows in the two bare figures."""
    chosen = [throughput.Case("bare", "plain"), throughput.Case("webhook", "plain")]
    if not args.no_safe:
        chosen += [throughput.Case("webhook", "safe"), throughput.Case("bare", "safe")]
    return chosen


def run_throughput(args: argparse.Namespace, logs: Path) -> list[dict[str, Any]]:
    load = throughput.Load(args.connections, args.warmup, args.duration)
    with RedisServer(log_dir(logs, "redis-throughput")) as redis_server:
        # /help never reaches the LLM: nothing listens at this address
        servers = throughput.Servers(free_port(), redis_server.url, "http://127.0.0.1:9/v1", logs)
        return throughput.with_ratios(throughput.run_all(cases(args), load, servers))


def machine() -> str:
    """The CPU's model name, as /proc/cpuinfo says it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def meta(args: argparse.Namespace) -> dict[str, Any]:
    fields = Settings.model_fields
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        # other work on the machine skews every figure: this shows whether the box was quiet
        "loadavg_1min_before": round(os.getloadavg()[0], 2),
        "web_workers": fields["web_workers"].default,
        "web_threads": fields["web_threads"].default,
        "worker_processes": fields["worker_processes"].default,
        "worker_threads": fields["worker_threads"].default,
        "reply_margin": fields["wechat_reply_margin"].default,
        "throughput_load": {
            "connections": args.connections,
            "duration": args.duration,
            "warmup": args.warmup,
            "senders": throughput.Load(0, 0, 0).senders,
            "generator": "wrk",
        },
    }


def fastchat_data_dir(args: argparse.Namespace) -> Path | None:
    """Where the local model for the FastChat benchmark is, or None when it is not to run.

    By default it runs only when the model is already prepared: preparing installs torch and
    converts the model (about 2 minutes), too much to do unasked. --fastchat prepares it here,
    before the run's alarm is set.
    """
    if args.skip_fastchat:
        return None
    data_dir = args.fastchat_data_dir or data_dir_from_env()
    if fastchat_overhead.prepared(data_dir):
        return data_dir
    if args.fastchat:
        LocalCluster(data_dir).prepare()
        return data_dir
    print(
        f"note: FastChat overhead benchmark skipped: no prepared local model in {data_dir} "
        "(`make local-llm` prepares it, about 2 minutes; or run with --fastchat)"
    )
    return None


def run_fastchat(data_dir: Path, logs: Path) -> dict[str, Any]:
    """The FastChat figures; a cluster or bot that does not start is reported, not fatal."""
    try:
        return fastchat_overhead.run(fastchat_overhead.Params(data_dir=data_dir), logs)
    except (LocalLLMError, RuntimeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_all(args: argparse.Namespace, logs: Path, fastchat_dir: Path | None) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {"meta": meta(args)}
    if not args.skip_throughput:
        results["throughput"] = run_throughput(args, logs)
    if not args.skip_latency:
        params = latency.Params(pickups=args.pickups, users=args.users)
        results["latency"] = latency.run(params, logs)
    if not args.skip_in_flight:
        results["in_flight"] = in_flight.run(in_flight.Params(questions=args.in_flight), logs)
    if fastchat_dir is not None:
        results["fastchat_overhead"] = run_fastchat(fastchat_dir, logs)
    results["meta"]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    results["meta"]["seconds"] = round(time.monotonic() - started)
    return results


def evidence(results: dict[str, Any]) -> list[str]:
    """Anything that went wrong, one line each, for the console."""
    lines = []
    for row in results.get("throughput", []):
        if row["errors"] or row["bad_bodies"] or row["log_errors"] or row["reused"]:
            lines.append(
                f"{row['case']}: errors {row['error_kinds']}, bad bodies {row['bad_bodies']}, reused pushes "
                f"{row['reused']}, error log lines {row['log_errors']} {row['log_evidence'][:2]}"
            )
    for name in ("latency", "in_flight"):
        found = results.get(name) or {}
        names = ("warmup", "pickup", "ready_at", "spread", "together", "held")
        cases = [found.get(case) or {} for case in names]
        for case in [found, *cases]:
            if isinstance(case, dict):
                lines += [f"{name}: {problem}" for problem in case.get("problems", [])[:5]]
        if any(found.get("log_errors", {}).values()):
            lines.append(f"{name}: error log lines {found['log_errors']} {found['log_evidence'][:2]}")
        if (found.get("held") or {}).get("log_errors"):
            lines.append(f"{name}: the bare held app logged {found['held']['log_errors']} error lines")
    if "fastchat_overhead" in results:
        lines += fastchat_overhead.evidence(results["fastchat_overhead"])
    return lines


def markdown(results: dict[str, Any]) -> str:
    """report.py's tables, then the FastChat overhead table when it ran."""
    text = report.markdown(results)
    if "fastchat_overhead" in results:
        text += "\n" + "\n".join(fastchat_overhead.markdown(results["fastchat_overhead"])) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_throughput and not wrk.available():
        sys.exit(
            "bench: wrk is missing (Debian/Ubuntu: `apt-get install wrk`), or run with --skip-throughput"
        )
    fastchat_dir = fastchat_data_dir(args)
    procs.install_sigterm_handler()
    signal.signal(signal.SIGALRM, lambda signum, frame: sys.exit("bench: over the time limit"))
    signal.alarm(HARD_LIMIT + (fastchat_overhead.TIME_LIMIT if fastchat_dir else 0))
    logs = Path(tempfile.mkdtemp(prefix="wxbot-bench-"))
    try:
        results = run_all(args, logs, fastchat_dir)
    finally:
        signal.alarm(0)
        _dispose_logs(logs, args.keep_logs)
    text = markdown(results)
    json_path, md_path = report.write(results, RESULTS, text)
    print("\n" + text)
    for line in evidence(results):
        print("!", line)
    print(f"written: {json_path} and {md_path.name}")
    if not args.no_readme:
        if report.into_readme(README, text):
            print(f"and the Benchmarks section of {README.name}")
        else:
            print(f"note: {README.name} has no benchmark markers; it was left alone")
    return 0


def _dispose_logs(logs: Path, keep: bool) -> None:
    if keep:
        print(f"logs kept in {logs}")
        return
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
