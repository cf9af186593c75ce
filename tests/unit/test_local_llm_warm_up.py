"""The local cluster's warm-up (bot/ops/local_llm.py): one token from the worker before the bot
takes questions, so that a follower's first question does not pay for reading the weights. Against a
fake FastChat worker; the real one warms up in tests/system/test_local_llm.py's cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.ops.local_llm import MODEL_NAME, LocalCluster, LocalLLMError, first_token, prefetch
from bot.ops.processes import free_port
from testing.fakes.fastchat import FakeController, FakeWorker


def cluster_of(worker: FakeWorker, data_dir: Path) -> LocalCluster:
    """A cluster whose worker is the fake (no processes of its own to watch)."""
    cluster = LocalCluster(data_dir, start_timeout=5.0)
    cluster.worker_port = int(worker.url.rsplit(":", 1)[1])
    return cluster


def test_the_warm_up_asks_the_worker_for_one_greedy_token(tmp_path: Path) -> None:
    with FakeWorker(reply="Hi") as worker:
        seconds = cluster_of(worker, tmp_path).warm_up()
        [body] = worker.generate_requests()
    assert body["max_new_tokens"] == 1 and body["temperature"] == 0.0
    assert body["prompt"].startswith("<|im_start|>user\n")  # ChatML, the worker's template
    assert 0 <= seconds < 5


def test_a_worker_error_stops_the_start_with_the_answer_and_the_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "fastchat-worker.log").write_text("RuntimeError: out of memory\n")
    with FakeWorker(error_code=50001) as worker, pytest.raises(LocalLLMError) as raised:
        cluster_of(worker, tmp_path).warm_up()
    message = str(raised.value)
    assert "first answer failed" in message and "50001" in message
    assert "RuntimeError: out of memory" in message


def test_a_worker_that_hangs_up_stops_the_start(tmp_path: Path) -> None:
    with FakeWorker(die_after_chunks=0) as worker, pytest.raises(LocalLLMError, match="first answer failed"):
        cluster_of(worker, tmp_path).warm_up()


def test_ctrl_c_during_the_warm_up_stops_waiting(tmp_path: Path) -> None:
    with (
        FakeWorker(reply="slow answer", chunk_size=1, chunk_delay=1.0) as worker,
        pytest.raises(LocalLLMError, match="cancelled while warming up"),
    ):
        cluster_of(worker, tmp_path).warm_up(cancelled=lambda: True)


def test_first_token_reads_the_null_separated_stream() -> None:
    with FakeWorker(reply="abcdefgh", chunk_size=2) as worker:
        first_token(worker.url, timeout=5.0)  # several objects, the last one error_code 0


def test_prefetch_is_only_a_hint(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 4096)
    prefetch(weights)
    prefetch(tmp_path / "missing.safetensors")  # no file: nothing to read ahead, no error


def test_the_worker_is_ready_when_listed_and_listening(tmp_path: Path) -> None:
    """FastChat's worker registers with the controller before its HTTP server listens: listed alone,
    a request to it (the warm-up's) was refused — seen on a fresh clone's `make run` test."""
    with FakeController() as controller, FakeWorker(models=(MODEL_NAME,)) as worker:
        cluster = cluster_of(worker, tmp_path)
        cluster.controller_port = int(controller.url.rsplit(":", 1)[1])
        assert not cluster._model_listed()  # not registered yet
        controller.register(worker)
        assert cluster._model_listed()
        cluster.worker_port = free_port()  # registered, nothing listening there yet
        assert not cluster._model_listed()
