"""`make bench-tools`: what the built-in tools are worth and what their loop costs.

1. Accuracy (when a real model is configured: BENCH_LLM_BASE_URL, BENCH_LLM_MODEL, BENCH_LLM_API_KEY,
   any OpenAI-compatible server whose model calls functions): the Chinese finance and arithmetic
   questions of bench/tools_questions.json (compound growth, 同比/环比, 等额本息, 鸡兔同笼, percentages,
   normal probabilities, days between dates, present values), each asked twice through the bot's own
   answer job (bot/answering/generation.py, a real Redis) — with TOOLS empty and with every tool — and
   the final number of each answer (the one after 「答案」, else the last) compared with the answer key
   within the question's tolerance. Every key is computed by our own tools in
   tests/unit/test_tools_bench_questions.py, so it cannot be wrong.
2. The loop's overhead, always: answers whose model makes 0 to 3 rounds of one tool call each, against
   the loopback fake OpenAI server (testing/fakes/openai_server.py: it streams the calls at once, zero
   model time), through the same answer job; the time one more round adds (the median answer with three
   rounds minus the median answer with none, over three), per tool, and the tool's own time alone.

    .venv/bin/python -m bench.tools_bench                       # overhead (+ accuracy if configured)
    .venv/bin/python -m bench.tools_bench --limit 10 --max-tokens 256

Results: bench/results/tools.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis

from bot.answering.generation import AnswerJob
from bot.config import Settings, load_settings
from bot.knowledge.documents import Block, Document
from bot.ops.redis_server import RedisServer
from bot.runtime import Runtime
from bot.tools import TOOL_NAMES, ToolBox
from testing.fakes.openai_server import FakeOpenAI

QUESTIONS_FILE = Path(__file__).with_name("tools_questions.json")
RESULTS = Path(__file__).with_name("results")
#: what the model is told for every question (the bot's SYSTEM_PROMPT in this benchmark)
SYSTEM_PROMPT = "你是一个精确的金融计算助手。需要计算时调用工具，不要心算。回答简短，最后写出结果的数值。"
#: one call of each tool, for the overhead (the knowledge base holds one document for the search)
OVERHEAD_CALLS = {
    "calculator": {"expression": "1000000*(0.049/12)*(1+0.049/12)**360/((1+0.049/12)**360-1)"},
    "solve_equations": {"equations": ["x + y = 35", "2*x + 4*y = 94"]},
    "normal_distribution": {"question": "above", "x": 130, "mean": 100, "sd": 15},
    "dates": {"question": "between", "date": "2023-06-18", "date2": "2024-02-10"},
    "search_knowledge": {"query": "行业轮动 超配"},
}
ROTATION = Document(
    "行业轮动月报",
    [Block("核心观点", heading=True), Block("十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业。")],
    source="wechat",
    key="bench:rotation",
    url="https://mp.weixin.qq.com/s/rotation",
)


# --- the questions and their answers ------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: float
    #: relative tolerance (0: exact)
    tolerance: float
    #: a percentage or a probability: 0.1, 10 and 10% are the same answer
    percent: bool
    #: the call of our tools that computes the answer: tool, arguments, pick (the unknown), scale
    check: dict[str, Any] = field(hash=False)

    def correct(self, value: float | None) -> bool:
        if value is None:
            return False
        candidates = [value, value * 100, value / 100] if self.percent else [value]
        allowed = self.tolerance * abs(self.answer) if self.tolerance else 1e-9
        return any(abs(candidate - self.answer) <= allowed for candidate in candidates)


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    return [
        Question(
            item["id"],
            item["question"],
            float(item["answer"]),
            float(item["tolerance"]),
            bool(item.get("percent", False)),
            item["check"],
        )
        for item in json.loads(path.read_text(encoding="utf-8"))["questions"]
    ]


_SOLUTION = r"(?:^|, ){name} = ([^,≈\n]+?)(?: ≈ (-?[\d.]+(?:e[-+]?\d+)?))?(?=,|$)"
_RESULT = re.compile(r"(?: = | is )(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
_DAYS = re.compile(r": (-?\d+) days$")


def tool_value(toolbox: ToolBox, check: dict[str, Any]) -> float:
    """The number our tool gives for a question's check (ValueError if it gives none)."""
    result = toolbox.call(check["tool"], json.dumps(check["arguments"], ensure_ascii=False))
    if result.outcome != "ok":
        raise ValueError(f"{check['tool']}: {result.text}")
    return read_result(result.text, check.get("pick")) * float(check.get("scale", 1))


def read_result(text: str, pick: str | None = None) -> float:
    """The number in a tool's result: the unknown `pick` of the solver's first non-negative solution,
    the days between two dates, or the number after the last `=` (or `is`)."""
    if pick:
        for line in text.splitlines():
            found = re.search(_SOLUTION.format(name=re.escape(pick)), line)
            if found:
                value = float(found.group(2) or found.group(1))
                if value >= 0:
                    return value
        raise ValueError(f"no non-negative {pick} in {text!r}")
    if days := _DAYS.search(text):
        return float(days.group(1))
    numbers = _RESULT.findall(text)
    if not numbers:
        raise ValueError(f"no number in {text!r}")
    return float(numbers[-1])


_NUMBER = re.compile(r"([-−])?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(万亿|亿|万|%|％)?")
_UNITS = {"万": 1e4, "亿": 1e8, "万亿": 1e12}
_FINAL = re.compile(r"答案|最终结果|结果为|约为|等于")


def extract_number(text: str) -> float | None:
    """The answer's final number: the first after the last 「答案」(or 结果为, 约为…), else the last number
    of the text; `1,234.5` and `12.5万` read as people mean them, a percentage as its number."""
    text = text.replace("\\,", "").replace("\u2009", "")
    markers = list(_FINAL.finditer(text))
    if markers:
        found = _NUMBER.search(text, markers[-1].end())
        if found:
            return _value(found)
    numbers = list(_NUMBER.finditer(text))
    return _value(numbers[-1]) if numbers else None


def _value(match: re.Match[str]) -> float:
    sign, digits, unit = match.groups()
    value = float(digits.replace(",", "")) * _UNITS.get(unit or "", 1.0)
    return -value if sign else value


def tool_found(question: Question, note: str) -> bool:
    """Whether one of the tools' results (the history's note of them) is the right answer, whatever the
    model then wrote: the model chose the right tool and arguments."""
    for result in re.findall(r"→ ([^；］]+)", note):
        try:
            if question.correct(read_result(result.strip(), question.check.get("pick"))):
                return True
        except ValueError:
            continue
    return False


# --- asking through the bot's answer job --------------------------------------------------------
@dataclass
class Bench:
    redis_url: str
    client: redis.Redis
    serial: int = 0
    note: str = ""

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "wechat_token": "bench-token",
            "redis_url": self.redis_url,
            "openai_api_key": "x",
            "system_prompt": SYSTEM_PROMPT,
        }
        return load_settings(**(values | overrides))

    def ask(self, runtime: Runtime, job: AnswerJob, question: str) -> tuple[str, str, float, int]:
        """One question as a new follower asks it: (the answer's text, its status, seconds, tool calls);
        `self.note`: what the tools found, as the history keeps it."""
        self.serial += 1
        openid = f"bench-{self.serial}"
        before = sum(runtime.metrics.counter("tool_calls").values())
        answer_id = runtime.answers.create(
            openid, question, owner="bench", reserved_for=0, delivery="passive"
        )
        started = time.perf_counter()
        job.run(answer_id)
        seconds = time.perf_counter() - started
        answer = runtime.answers.get(answer_id)
        assert answer is not None
        pages = [
            runtime.answers.page(answer, index) or ""
            for index in range(runtime.answers.page_count(answer_id))
        ]
        calls = sum(runtime.metrics.counter("tool_calls").values()) - before
        turn = runtime.history.messages(openid)
        self.note = str(turn[-1]["content"]).split("］", 1)[0] if calls and turn else ""
        return "".join(pages), answer.status, seconds, calls


@contextmanager
def infrastructure() -> Iterator[Bench]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tools-")))
        server = stack.enter_context(RedisServer(workdir / "redis"))
        client = redis.Redis.from_url(server.url, decode_responses=True)
        stack.callback(client.close)
        yield Bench(server.url, client)


@contextmanager
def runtime_of(settings: Settings) -> Iterator[tuple[Runtime, AnswerJob]]:
    runtime = Runtime(settings)
    try:
        yield runtime, AnswerJob(runtime)
    finally:
        runtime.close()


# --- 1. accuracy with a real model --------------------------------------------------------------
def accuracy(bench: Bench, args: argparse.Namespace, questions: list[Question]) -> dict[str, Any]:
    """Each question without tools, then with every tool; the answers, and the share answered right."""
    model = {
        "openai_base_url": args.base_url,
        "openai_model": args.model,
        "openai_api_key": args.api_key or "x",
        "llm_max_tokens": args.max_tokens,
        "llm_temperature": 0.0,
        "openai_timeout": args.timeout,
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for mode, tools in (("without_tools", ""), ("with_tools", ",".join(TOOL_NAMES))):
        with runtime_of(bench.settings(tools=tools, **model)) as (runtime, job):
            runs[mode] = []
            for question in questions:
                text, status, seconds, calls = bench.ask(runtime, job, question.question)
                value = extract_number(text)
                runs[mode].append(
                    {
                        "id": question.id,
                        "status": status,
                        "value": value,
                        "correct": question.correct(value),
                        "seconds": round(seconds, 2),
                        "tool_calls": calls,
                        "tool_found_it": tool_found(question, bench.note),
                        "text": text[-300:],
                    }
                )
                mark = "ok " if runs[mode][-1]["correct"] else "NO "
                print(
                    f"{mode:13} {mark} {question.id:14} {seconds:6.1f}s calls={calls} value={value}",
                    flush=True,
                )
    summary = {
        mode: {
            "correct": sum(run["correct"] for run in answers),
            "questions": len(answers),
            "accuracy": round(sum(run["correct"] for run in answers) / len(answers), 3),
            "median_seconds": round(statistics.median(run["seconds"] for run in answers), 2),
            "answers_with_tool_calls": sum(run["tool_calls"] > 0 for run in answers),
            "a_tool_found_the_answer": sum(run["tool_found_it"] for run in answers),
            "failed": sum(run["status"] != "done" for run in answers),
        }
        for mode, answers in runs.items()
    }
    return {
        "model": args.model,
        "base_url": args.base_url,
        "max_tokens": args.max_tokens,
        "summary": summary,
        "runs": runs,
    }


# --- 2. the loop's overhead against the loopback fake -------------------------------------------
def overhead(bench: Bench, repeats: int) -> dict[str, Any]:
    """Per tool: median answer time with 0…3 rounds of one call, what one round adds, the tool alone."""
    with (
        FakeOpenAI(reply="答案：42") as fake,
        runtime_of(bench.settings(openai_base_url=fake.base_url)) as (
            runtime,
            job,
        ),
    ):
        runtime.knowledge.add(ROTATION)
        figures: dict[str, Any] = {}
        for name, arguments in OVERHEAD_CALLS.items():
            call = (name, json.dumps(arguments, ensure_ascii=False))
            times: dict[int, list[float]] = {rounds: [] for rounds in range(4)}
            for repeat in range(repeats + 2):  # the first two warm up (connections, the forkserver)
                for rounds in range(4):
                    fake.set_behavior(tool_script=_rounds_of(call, rounds))
                    text, status, seconds, calls = bench.ask(runtime, job, "算一下")
                    if status != "done" or calls != rounds:
                        raise RuntimeError(f"{name} x{rounds}: {status}, {calls} calls: {text!r}")
                    if repeat >= 2:
                        times[rounds].append(seconds)
            medians = {rounds: statistics.median(values) for rounds, values in times.items()}
            figures[name] = {
                "answer_ms": {str(rounds): round(value * 1000, 1) for rounds, value in medians.items()},
                "per_round_ms": round((medians[3] - medians[0]) / 3 * 1000, 1),
                "tool_alone_ms": round(_tool_alone(runtime, call, repeats) * 1000, 2),
            }
            print(f"overhead {name:20} {figures[name]}", flush=True)
        return figures


def _rounds_of(call: tuple[str, str], rounds: int) -> Any:
    """A model that makes `call` once per round, `rounds` times, then answers."""

    def script(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
        done = sum(1 for message in messages if message.get("role") == "tool")
        return [call] if done < rounds else []

    return script


def _tool_alone(runtime: Runtime, call: tuple[str, str], repeats: int) -> float:
    box = ToolBox.enabled(list(TOOL_NAMES), ZoneInfo("Asia/Shanghai"), runtime.knowledge)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        box.call(*call)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- the report ---------------------------------------------------------------------------------
def markdown(results: dict[str, Any], meta: str) -> str:
    lines = [meta, ""]
    if "accuracy" in results:
        found = results["accuracy"]
        without, with_tools = found["summary"]["without_tools"], found["summary"]["with_tools"]
        lines += [
            f"**Accuracy** — `{found['model']}` (max_tokens {found['max_tokens']}, temperature 0), "
            f"{without['questions']} questions of bench/tools_questions.json:",
            "",
            "| | right | accuracy | answers that called a tool | a tool's result was right "
            "| failed | median seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, row in (("without tools", without), ("with tools", with_tools)):
            lines.append(
                f"| {label} | {row['correct']}/{row['questions']} | {row['accuracy']:.0%} "
                f"| {row['answers_with_tool_calls']} | {row['a_tool_found_the_answer']} | {row['failed']} "
                f"| {row['median_seconds']} |"
            )
        lines.append("")
    else:
        lines += ["**Accuracy** — not measured (no BENCH_LLM_BASE_URL/BENCH_LLM_MODEL).", ""]
    if "overhead" not in results:
        return "\n".join(lines) + "\n"
    lines += [
        "**Loop overhead** — the loopback fake model (zero model time) through the bot's answer job; "
        "median answer time with 0–3 rounds of one call, what one round adds, the tool alone:",
        "",
        "| tool | 0 rounds | 1 | 2 | 3 | per round | tool alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["overhead"].items():
        answer_ms = row["answer_ms"]
        cells = [f"{answer_ms[str(rounds)]} ms" for rounds in range(4)]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {row['per_round_ms']} ms | {row['tool_alone_ms']} ms |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools_bench", description=__doc__)
    parser.add_argument("--base-url", default=os.environ.get("BENCH_LLM_BASE_URL", ""))
    parser.add_argument("--model", default=os.environ.get("BENCH_LLM_MODEL", ""))
    parser.add_argument("--api-key", default=os.environ.get("BENCH_LLM_API_KEY", ""))
    parser.add_argument("--max-tokens", type=int, default=512, help="per request of the real model")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request of the real model")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions (0: all)")
    parser.add_argument("--repeats", type=int, default=15, help="answers per overhead figure")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead measurement")
    args = parser.parse_args(argv)
    questions = load_questions()
    if args.limit:
        questions = questions[: args.limit]
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with infrastructure() as bench:
        if not args.no_overhead:
            results["overhead"] = overhead(bench, args.repeats)
        if args.base_url and args.model:
            results["accuracy"] = accuracy(bench, args, questions)
    meta = (
        f"Tools benchmark of {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"(Python {platform.python_version()}, load average {load:.2f} before the run), `make bench-tools`."
    )
    results["meta"] = meta
    RESULTS.mkdir(exist_ok=True)
    name = "tools" if not args.limit else f"tools-first{args.limit}"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    text = markdown(results, meta)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
