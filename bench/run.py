"""`make bench`: run the benchmarks, print the tables, write bench/results/latest.{json,md}.

The FastChat overhead benchmark (bench/fastchat_overhead.py) runs when the local model is already
prepared (`make local-llm`, about 2 minutes once) or with --fastchat, which prepares it first.

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
from pathlib import Path
from typing import Any

from bench import fastchat_overhead, procs, reply_delay, report, throughput
from bench.common import log_dir
from bot.config import Settings
from bot.ops.local_llm import LocalCluster, LocalLLMError, data_dir_from_env
from bot.ops.redis_server import RedisServer, free_port
from testing.fakes.openai_server import FakeOpenAI

RESULTS = Path(__file__).resolve().parent / "results"
#: the whole run is ended (cleanly, through SystemExit) after this many seconds
HARD_LIMIT = 300


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (K)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before that")
    parser.add_argument("--load-processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--users", type=int, default=100, help="simultaneous users (reply delay)")
    parser.add_argument("--no-safe", action="store_true", help="skip the AES (safe mode) variant")
    parser.add_argument("--skip-delay", action="store_true", help="skip the reply-delay benchmark")
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
    load = throughput.Load(args.connections, args.warmup, args.duration, args.load_processes)
    with RedisServer(log_dir(logs, "redis-throughput")) as redis_server, FakeOpenAI() as fake:
        servers = throughput.Servers(free_port(), redis_server.url, fake.base_url, logs)
        return throughput.with_ratios(throughput.run_all(cases(args), load, servers))


def meta(args: argparse.Namespace) -> dict[str, Any]:
    fields = Settings.model_fields
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        # other work on the machine skews every figure: this shows whether the box was quiet
        "loadavg_1min_before": round(os.getloadavg()[0], 2),
        "web_workers": fields["web_workers"].default,
        "web_threads": fields["web_threads"].default,
        "throughput_load": {
            "connections": args.connections,
            "duration": args.duration,
            "warmup": args.warmup,
            "load_processes": args.load_processes,
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
    results: dict[str, Any] = {"meta": meta(args), "throughput": run_throughput(args, logs)}
    if not args.skip_delay:
        results["reply_delay"] = reply_delay.run(reply_delay.Params(users=args.users), logs)
    if fastchat_dir is not None:
        results["fastchat_overhead"] = run_fastchat(fastchat_dir, logs)
    results["meta"]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    return results


def evidence(results: dict[str, Any]) -> list[str]:
    """Anything that went wrong, one line each, for the console."""
    lines = []
    for row in results["throughput"]:
        if row["errors"] or row["bad_bodies"] or row["log_errors"]:
            lines.append(
                f"{row['case']}: errors {row['error_kinds']}, bad bodies {row['bad_bodies']}, "
                f"error log lines {row['log_errors']} {row['log_evidence'][:2]}"
            )
    delay = results.get("reply_delay") or {}
    lines += [f"reply delay: {problem}" for problem in delay.get("problems", [])[:10]]
    if any(delay.get("log_errors", {}).values()):
        lines.append(f"reply delay: error log lines {delay['log_errors']} {delay['log_evidence'][:2]}")
    if "fastchat_overhead" in results:
        lines += fastchat_overhead.evidence(results["fastchat_overhead"])
    return lines


def markdown(results: dict[str, Any]) -> str:
    """report.py's tables, then the FastChat overhead table when it ran."""
    text = report.markdown(results)
    if "fastchat_overhead" in results:
        text += "\n" + "\n".join(fastchat_overhead.markdown(results["fastchat_overhead"])) + "\n"
    return text


def write(results: dict[str, Any]) -> tuple[Path, Path]:
    json_path, md_path = report.write(results, RESULTS)
    md_path.write_text(markdown(results))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    json_path, md_path = write(results)
    print("\n" + markdown(results))
    for line in evidence(results):
        print("!", line)
    print(f"written: {json_path} and {md_path.name}")
    return 0


def _dispose_logs(logs: Path, keep: bool) -> None:
    if keep:
        print(f"logs kept in {logs}")
        return
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
