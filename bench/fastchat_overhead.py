"""Benchmark 3: what the bot adds to a real model — time to the first page, tokens/s, as ratios.

One run starts the local FastChat cluster (bot/ops/local_llm.py: a controller and a CPU model worker
with the first-run model, Qwen2.5-Coder-0.5B-Instruct), Redis, gunicorn and one Dramatiq worker
process, then asks the same question, greedily (every path writes the same tokens), along three
paths, alternating:

* worker — raw HTTP to /worker_generate_stream (bench/fastchat_direct.py): the floor;
* client — the bot's FastChatBackend.stream in this process: the client without the bot;
* bot    — a signed WeChatSimulator push to gunicorn → Dramatiq job → backend → pages in Redis →
  the waiting request; WeChat's attempt timeout is raised so that the first page can come back
  on the first attempt whatever the CPU's speed.

"First page" is the same text in every path: the baselines cut their stream with the bot's own
PageSplitter and page budget. For the bot, the job's notices on the user's ready channel time the
stages of the first page (queued, running, stored) and the moment the last page is stored.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
import requests

from bench import procs
from bench.common import APPID, TOKEN, app_env, bad_log_lines, log_dir
from bench.fastchat_direct import Timing, WorkerClient, bot_backend, time_stream
from bench.stats import ms
from bot import texts
from bot.answering.paging import decoration_reserve
from bot.llm import ChatMessage, LLMError
from bot.llm.base import text_only
from bot.ops.local_llm import MODEL_NAME, LocalCluster, LocalLLMError, data_dir_from_env
from bot.ops.redis_server import RedisServer, free_port
from bot.store import keys
from bot.store.answers import TERMINAL
from testing.simulator import WeChatSimulator

PATHS = ("worker", "client", "bot")
LABELS = {
    "worker": "worker, raw HTTP",
    "client": "bot's FastChatBackend, in process",
    "bot": "bot: push → gunicorn → Dramatiq → page",
}
SYSTEM_PROMPT = "You are a helpful assistant."
#: the tiny model answers this at length (it fills max_new_tokens): several pages
QUESTION = "Explain how a steam engine works, step by step, in detail."
#: answered in a few tokens: warms the model, the clients' caches and the job worker cheaply
WARMUP_QUESTION = "Say hello."
#: WeChat's is 5 s; longer here so that a slow CPU still gets page 1 on attempt 1 (no retry path)
ATTEMPT_TIMEOUT = 30.0
ANSWER_TIMEOUT = 60.0
#: the whole benchmark, start to stop; bench/run.py's alarm allows this much for it
TIME_LIMIT = 180
#: no new round starts after this many seconds of measuring (start and stop take the rest)
MEASURE_BUDGET = 130.0
MAX_PAGES = 20
#: the stages of the bot's first page, in order (see BotClient.ask)
STAGES = ("webhook", "queue", "generate", "deliver")
#: the bot needs an OpenAI URL setting even when it uses FastChat; nothing listens there
UNUSED_OPENAI_URL = "http://127.0.0.1:9/v1"


class RunFailed(Exception):
    """One question did not get a complete answer along its path; the benchmark goes on."""


@dataclass(frozen=True)
class Params:
    data_dir: Path
    rounds: int = 3
    max_tokens: int = 128
    #: WECHAT_MAX_REPLY_BYTES; pages keep decoration_reserve() bytes free, the rest is answer text
    page_bytes: int = 600

    @property
    def page_budget(self) -> int:
        return self.page_bytes - decoration_reserve()


@dataclass(frozen=True)
class Run:
    path: str
    timing: Timing
    #: bot only: seconds of each stage of the first page, and what the user saw
    stages: dict[str, float] = field(default_factory=dict)
    attempts: int | None = None
    pages: int | None = None


def prepared(data_dir: Path) -> bool:
    """True when the FastChat venv and the converted model exist: starting takes seconds, not minutes."""
    cluster = LocalCluster(data_dir)
    stamp = cluster.venv_stamp
    return (
        stamp.is_file()
        and stamp.read_text().strip() == cluster.requirements_hash()
        and cluster.model_stamp.is_file()
    )


# ---- the bot's side -------------------------------------------------------------------------------
#: how often the watch looks for the job's start (seconds)
RUNNING_POLL = 0.002


class AnswerWatch:
    """When the user's answer starts running, gets its first page and ends.

    The job publishes on the user's ready channel when a page is stored and when the answer ends, so a
    subscription made before the push times those to the millisecond without polling Redis, which would
    take CPU from the model. Its start publishes nothing (nothing is deliverable then): until the watch
    has seen it, it looks every RUNNING_POLL seconds — a few milliseconds of reads after each push.
    """

    def __init__(self, redis_url: str, openid: str) -> None:
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.openid = openid
        self.seen: dict[str, float] = {}
        self.answer_id: str | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._pubsub = self.client.pubsub()
        self._thread = threading.Thread(target=self._listen, name="answer-watch", daemon=True)

    def __enter__(self) -> Self:
        self._pubsub.subscribe(keys.ready_channel(self.openid))
        confirmed = self._pubsub.get_message(timeout=2.0)  # no notice may be missed: wait for it
        if not confirmed or confirmed.get("type") != "subscribe":
            raise RunFailed(f"no subscription to the ready channel: {confirmed!r}")
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._pubsub.close()
        self.client.close()

    def _listen(self) -> None:
        while not self._stop.is_set() and not self.finished.is_set():
            starting = "running" not in self.seen
            message = self._pubsub.get_message(timeout=RUNNING_POLL if starting else 0.2)
            if starting or (message and message.get("type") == "message"):
                self._look(time.time())

    def _look(self, at: float) -> None:
        self.answer_id = self.answer_id or self._find_answer()
        if self.answer_id is None:
            return
        status = self.client.hget(keys.answer(self.answer_id), "status")
        if status in ("running", *TERMINAL):
            self.seen.setdefault("running", at)
        if self.client.llen(keys.answer_pages(self.answer_id)):
            self.seen.setdefault("first_page", at)
        if status in TERMINAL:
            self.seen.setdefault("done", at)
            self.finished.set()

    def _find_answer(self) -> str | None:
        """The user's only answer: owed until its first page is delivered, then current."""
        owed = self.client.lrange(keys.owed(self.openid), 0, 0)
        current = owed[0] if owed else self.client.hget(keys.current(self.openid), "answer")
        return None if current is None else str(current)


class BotClient:
    """Asks through the whole bot as a WeChat user; one new user per question (no history)."""

    def __init__(self, url: str, redis_url: str) -> None:
        self.simulator = WeChatSimulator(url, TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT)
        self.redis_url = redis_url
        self._users = itertools.count(1)

    def ask(self, question: str) -> Run:
        openid = f"bench-fastchat-{next(self._users)}"
        xml = self.simulator.text_xml(openid, question)
        with AnswerWatch(self.redis_url, openid) as watch:
            sent = time.time()
            delivery = self.simulator.push(xml)
            received = time.time()
            if not watch.finished.wait(ANSWER_TIMEOUT):
                raise RunFailed(f"the answer was not finished {ANSWER_TIMEOUT:.0f} s after the push")
        first = delivery.text
        if delivery.user_sees_failure or not first or first in (texts.STILL_WORKING, texts.SERVICE_DOWN):
            tries = len(delivery.attempts)
            raise RunFailed(f"the push did not bring page 1: {first!r} after {tries} attempts")
        created, text = self._stored(watch)
        seen = watch.seen
        if not {"running", "first_page", "done"} <= seen.keys():
            raise RunFailed(f"missed the job's notices: saw only {sorted(seen)}")
        stages = {
            "webhook": created - sent,  # push sent → answer created and queued
            "queue": seen["running"] - created,  # → a Dramatiq worker thread runs the job
            "generate": seen["first_page"] - seen["running"],  # → page 1 stored in Redis
            "deliver": received - seen["first_page"],  # → the waiting request replied to WeChat
        }
        timing = Timing(None, received - sent, seen["done"] - sent, text)
        return Run("bot", timing, stages, len(delivery.attempts), self._read_rest(openid, first))

    def _stored(self, watch: AnswerWatch) -> tuple[float, str]:
        """(when the webhook created the answer, the answer's text: its pages as stored)."""
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            answer_id = watch.answer_id or ""
            created = client.hget(keys.answer(answer_id), "created")
            pages = client.lrange(keys.answer_pages(answer_id), 0, -1)
        finally:
            client.close()
        if created is None:
            raise RunFailed(f"answer {answer_id!r} is not in Redis")
        return float(created), "".join(str(page) for page in pages)

    def _read_rest(self, openid: str, first: str) -> int:
        """Fetch the other pages with 继续, as the user would: they must all reach the user."""
        pages, text = 1, first
        while text.endswith(texts.MORE_HINT) and pages < MAX_PAGES:
            text = self.simulator.push(self.simulator.text_xml(openid, "继续")).text or ""
            pages += 1
        if text.endswith(texts.MORE_HINT) or text in (texts.NOTHING_MORE, ""):
            raise RunFailed(f"继续 did not bring the last page (page {pages}: {text[:60]!r})")
        return pages


# ---- the three paths --------------------------------------------------------------------------------
class Paths:
    """The same question along each path; each call returns one timed answer."""

    def __init__(self, cluster: LocalCluster, params: Params, bot: BotClient) -> None:
        self.params = params
        self.worker = WorkerClient(cluster.controller_url, MODEL_NAME)
        self.backend = bot_backend(cluster.controller_url, MODEL_NAME, params.max_tokens)
        self.bot = bot

    def ask(self, path: str, question: str) -> Run:
        messages: list[ChatMessage] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
        started = time.monotonic()
        if path == "worker":
            pieces = self.worker.pieces(self.worker.payload(messages, self.params.max_tokens))
        elif path == "client":
            pieces = to_the_token_limit(text_only(self.backend.stream(messages)))
        else:
            return self.bot.ask(question)
        return Run(path, time_stream(pieces, self.params.page_budget, started))

    def close(self) -> None:
        self.worker.close()
        self.backend.session.close()


def to_the_token_limit(pieces: Iterator[str]) -> Iterator[str]:
    """The answer up to max_new_tokens: the backend reports reaching that limit as `cut_short`
    ("length"), which is how every answer of this benchmark ends (the worker path reads the same end as
    a finish_reason); any other failure is one."""
    try:
        yield from pieces
    except LLMError as exc:
        if exc.kind != "cut_short" or exc.detail != "length":
            raise


def attempt(paths: Paths, path: str, question: str, problems: list[str]) -> Run | None:
    """One question; a failure is noted and the benchmark goes on with the next."""
    try:
        return paths.ask(path, question)
    except (RunFailed, LLMError, requests.RequestException, RuntimeError) as exc:
        problems.append(f"{path}: {type(exc).__name__}: {exc}")
        return None


def measure(paths: Paths, rounds: int, budget: float) -> tuple[list[Run], list[str]]:
    """A warm-up question per path, then `rounds` rounds, the order reversed every other round.

    Alternating spreads any drift of the machine (another process, thermal) over every path. A
    round that would not fit in `budget` seconds is not started: the benchmark must end by itself.
    """
    problems: list[str] = []
    for path in PATHS:
        attempt(paths, path, WARMUP_QUESTION, problems)
    runs: list[Run] = []
    deadline = time.monotonic() + budget
    for index in range(rounds):
        order = PATHS if index % 2 == 0 else PATHS[::-1]
        longest = max((run.timing.total for run in runs), default=15.0)
        if time.monotonic() + len(order) * longest * 1.2 > deadline:
            problems.append(f"time budget: stopped after {index} of {rounds} rounds")
            break
        runs += [run for path in order if (run := attempt(paths, path, QUESTION, problems))]
    return runs, problems


# ---- the figures -----------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def path_row(runs: list[Run], tokens: dict[str, int]) -> dict[str, Any]:
    """Medians of one path; tokens/s = the answer's tokens over the whole wait for it."""

    def median_ms(pick: Callable[[Run], float | None]) -> float | None:
        return ms(_median([value for run in runs if (value := pick(run)) is not None]))

    rates = [tokens[run.timing.text] / run.timing.total for run in runs if run.timing.total > 0]
    rate = _median(rates)
    return {
        "runs": len(runs),
        "first_token_ms": median_ms(lambda run: run.timing.first_token),
        "first_page_ms": median_ms(lambda run: run.timing.first_page),
        "total_ms": median_ms(lambda run: run.timing.total),
        "tokens": _median([float(tokens[run.timing.text]) for run in runs]),
        "tokens_per_s": None if rate is None else round(rate, 2),
    }


def ratios(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """path / worker: above 1 for time to the first page means slower, below 1 for tokens/s too."""

    def ratio(name: str) -> float | None:
        if row[name] is None or not base[name]:
            return None
        return round(row[name] / base[name], 3)

    return {"first_page": ratio("first_page_ms"), "tokens_per_s": ratio("tokens_per_s")}


def summarize(runs: list[Run], worker: WorkerClient, params: Params) -> dict[str, Any]:
    answers = {run.timing.text for run in runs}
    tokens = {text: worker.count_tokens(text) for text in answers}
    rows = {path: path_row([run for run in runs if run.path == path], tokens) for path in PATHS}
    bot_runs = [run for run in runs if run.path == "bot"]
    stages = {name: ms(_median([run.stages[name] for run in bot_runs])) for name in STAGES}
    # per run, so that the model's own run-to-run spread (±5 %) does not blur it as the ratios do
    own = _median([run.timing.first_page - run.stages["generate"] for run in bot_runs])
    return {
        "model": MODEL_NAME,
        "question": QUESTION,
        "max_new_tokens": params.max_tokens,
        "page_bytes": params.page_bytes,
        "page_text_bytes": params.page_budget,
        # the runs each path made (the time budget may have stopped the rounds early)
        "rounds": min((sum(1 for run in runs if run.path == path) for path in PATHS), default=0),
        "paths": rows,
        "ratios": {path: ratios(rows[path], rows["worker"]) for path in ("client", "bot")},
        "bot_first_page_stages_ms": stages,
        "bot_own_first_page_ms": ms(own),
        "bot_attempts": [run.attempts for run in bot_runs],
        "bot_pages": [run.pages for run in bot_runs],
        "same_answer_everywhere": len(answers) <= 1,
        "runs": [_run_json(run) for run in runs],
    }


def _run_json(run: Run) -> dict[str, Any]:
    timing = run.timing
    return {
        "path": run.path,
        "first_token_ms": ms(timing.first_token),
        "first_page_ms": ms(timing.first_page),
        "total_ms": ms(timing.total),
        "answer_bytes": len(timing.text.encode()),
        "stages_ms": {name: ms(value) for name, value in run.stages.items()},
    }


# ---- the processes ------------------------------------------------------------------------------------
def bot_env(port: int, redis_url: str, cluster: LocalCluster, params: Params) -> dict[str, str]:
    """The bot's settings: the cluster's model, greedy, the same max tokens, several pages an answer."""
    settings = app_env(port, redis_url, UNUSED_OPENAI_URL)
    settings |= {name.lower(): value for name, value in cluster.env().items()}
    settings |= {
        "fastchat_timeout": "30",
        "llm_max_tokens": str(params.max_tokens),
        "llm_temperature": "0",
        "system_prompt": SYSTEM_PROMPT,
        "wechat_max_reply_bytes": str(params.page_bytes),
        "wechat_attempt_timeout": str(ATTEMPT_TIMEOUT),
        "user_rate_per_minute": "0",
    }
    return procs.clean_env(**settings)


def start_bot(children: procs.Children, env: dict[str, str], redis_url: str, port: int) -> None:
    worker = procs.start_worker(children, env)
    procs.wait_worker(worker, redis_url)
    web = children.start("gunicorn", procs.gunicorn_command("app:create_app()"), env)
    procs.wait_http(web, port, "/healthz")


def run(params: Params, logs: Path) -> dict[str, Any]:
    """Start everything, measure, stop everything (whatever happens); the figures."""
    started = time.monotonic()
    with (
        LocalCluster(params.data_dir) as cluster,
        RedisServer(log_dir(logs, "redis-fastchat")) as redis_server,
        procs.Children(log_dir(logs, "fastchat")) as children,
    ):
        cluster.launch()
        port = free_port()
        start_bot(children, bot_env(port, redis_server.url, cluster, params), redis_server.url, port)
        startup = time.monotonic() - started
        paths = Paths(cluster, params, BotClient(f"http://127.0.0.1:{port}/wechat", redis_server.url))
        try:
            runs, problems = measure(paths, params.rounds, MEASURE_BUDGET)
            summary = summarize(runs, paths.worker, params)
        finally:
            paths.close()
        summary["log_errors"] = {child.name: bad_log_lines(child)[0] for child in children.started}
        summary["log_evidence"] = [line for child in children.started for line in bad_log_lines(child)[1]]
    summary |= {"problems": problems, "startup_s": round(startup, 1)}
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    return summary


# ---- the report ---------------------------------------------------------------------------------------
def _cell(value: float | None, unit: str = " ms") -> str:
    return "—" if value is None else f"{value:.0f}{unit}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def markdown(summary: dict[str, Any]) -> list[str]:
    """The table for bench/results/latest.md (medians), and where the bot's first page spends time."""
    if summary.get("error"):
        return ["**FastChat overhead** — not measured: " + str(summary["error"])]
    lines = [
        f"**FastChat overhead** — {summary['model']} on the CPU (local FastChat controller + model "
        f"worker), greedy, {summary['max_new_tokens']} new tokens, pages of {summary['page_bytes']} "
        f"bytes ({summary['page_text_bytes']} of answer text); medians of {_runs(summary['rounds'])} "
        "per path, paths alternating; tokens/s = answer tokens / time to the last page:",
        "",
        "| Path | first token | first page | last page | tokens | tokens/s | first page vs worker "
        "| tokens/s vs worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        row = summary["paths"][path]
        ratio = summary["ratios"].get(path, {"first_page": 1.0, "tokens_per_s": 1.0})
        rate = row["tokens_per_s"]
        lines.append(
            f"| {LABELS[path]} | {_cell(row['first_token_ms'])} | {_cell(row['first_page_ms'])} "
            f"| {_cell(row['total_ms'])} | {_cell(row['tokens'], '')} | {'—' if rate is None else rate} "
            f"| {_ratio(ratio['first_page'])} | {_ratio(ratio['tokens_per_s'])} |"
        )
    stages = summary["bot_first_page_stages_ms"]
    lines += [
        "",
        f"The bot's first page (medians): webhook → answer queued {_cell(stages['webhook'])}; "
        f"queued → job running {_cell(stages['queue'])} (Dramatiq); running → page 1 in Redis "
        f"{_cell(stages['generate'])}; → reply to WeChat {_cell(stages['deliver'])}. Everything but "
        f"the generation: {_cell(summary['bot_own_first_page_ms'])}.",
    ]
    return lines


# ---- command line -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fastchat_overhead", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: DATA_DIR or ./data")
    parser.add_argument("--rounds", type=int, default=Params.rounds, help="runs per path")
    parser.add_argument("--keep-logs", action="store_true", help="keep the bot's logs; print where")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """This benchmark alone: prints its table (bench/run.py writes it into bench/results/)."""
    args = parse_args(argv)
    params = Params(data_dir=args.data_dir or data_dir_from_env(), rounds=args.rounds)
    try:
        LocalCluster(params.data_dir).prepare()  # the first time: minutes, so before the alarm
    except LocalLLMError as exc:
        print(f"cannot prepare the local model: {exc}", file=sys.stderr)
        return 1
    procs.install_sigterm_handler()
    signal.signal(signal.SIGALRM, lambda signum, frame: sys.exit("bench: over the time limit"))
    signal.alarm(TIME_LIMIT)
    logs = Path(tempfile.mkdtemp(prefix="wxbot-bench-fastchat-"))
    try:
        summary = run(params, logs)
    finally:
        signal.alarm(0)
        if args.keep_logs:
            print(f"logs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print("\n".join(["", *markdown(summary)]))
    for line in evidence(summary):
        print("!", line)
    return 0


def evidence(summary: dict[str, Any]) -> list[str]:
    """Anything that went wrong, one line each, for the console."""
    lines = [f"fastchat overhead: {problem}" for problem in summary.get("problems", [])]
    if summary.get("error"):
        lines.append(f"fastchat overhead: {summary['error']}")
    if summary.get("same_answer_everywhere") is False:
        lines.append("fastchat overhead: the paths did not all write the same answer (not greedy?)")
    if any(summary.get("log_errors", {}).values()):
        sample = summary["log_evidence"][:2]
        lines.append(f"fastchat overhead: error log lines {summary['log_errors']} {sample}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
