"""FakeController and FakeWorker: loopback stand-ins for FastChat's controller and model workers.

They speak fschat 0.2.36's HTTP protocol: JSON POSTs everywhere, and /worker_generate_stream answers
with JSON objects each ended by a NUL byte, whose "text" is the whole answer so far. The controller
hands out its workers for a model in turn (FastChat's shortest-queue dispatch also rotates, since it
counts every address it hands out as queued work).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastchat.constants import SERVER_ERROR_MSG
from fastchat.conversation import get_conv_template

from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest

Reply = str | Callable[[str], str]
DEFAULT_MODEL = "vicuna-7b-v1.5"


@dataclass(frozen=True)
class WorkerBehavior:
    """How a FakeWorker answers; change it with `FakeWorker.set_behavior(**fields)`.

    `reply`: the answer, or a function of the prompt. `stream_texts`: send exactly these cumulative
    texts instead. `chunk_size`: characters added per streamed object. `error_code`: send this error
    object after `error_after_chunks` objects, then end. `die_after_chunks`: cut the connection after
    N objects (0: before the response headers). `count_tokens`: the fake tokenizer (default: one token
    per character); None makes /count_token fail with HTTP 500. `conv_template`: the FastChat template
    name the worker serves; None makes /worker_get_conv_template answer 404. `hold_after_chunks`: after
    that many objects the stream waits until `FakeWorker.release()` (the test decides the pace).
    """

    reply: Reply = "Hello from FastChat!"
    stream_texts: tuple[str, ...] | None = None
    chunk_size: int = 4
    chunk_delay: float = 0.0
    error_code: int | None = None
    error_after_chunks: int = 0
    die_after_chunks: int | None = None
    context_length: int | None = 4096
    count_tokens: Callable[[str], int] | None = len
    conv_template: str | None = "vicuna_v1.1"
    #: the last object's finish_reason (FastChat: "stop", or "length" at max_new_tokens); None: the
    #: stream ends without it
    finish_reason: str | None = "stop"
    hold_after_chunks: int | None = None


def conv_json(template_name: str) -> dict[str, Any]:
    """A template as a real worker sends it (FastAPI's encoding of the dataclass, sep_style an int)."""
    conv = get_conv_template(template_name)
    data = dataclasses.asdict(conv)
    data["sep_style"] = int(conv.sep_style)
    return data


class FakeWorker(FakeServer):
    """A model worker serving `models`; records every generate request (prompt and parameters)."""

    def __init__(self, models: tuple[str, ...] = (DEFAULT_MODEL,), **behavior: Any) -> None:
        super().__init__()
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._behavior = WorkerBehavior(**behavior)

    @property
    def behavior(self) -> WorkerBehavior:
        with self._lock:
            return self._behavior

    def set_behavior(self, **changes: Any) -> None:
        with self._lock:
            self._behavior = dataclasses.replace(self._behavior, **changes)

    def generate_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every /worker_generate_stream request (prompt, max_new_tokens, stop...)."""
        return [r.json for r in self.requests_to("/worker_generate_stream") if isinstance(r.json, dict)]

    @property
    def prompts(self) -> list[str]:
        return [str(body.get("prompt")) for body in self.generate_requests()]

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        behavior = self.behavior
        data = request.json if isinstance(request.json, dict) else {}
        if request.method != "POST":
            handler.send_json({"detail": "Method Not Allowed"}, 405)
        elif request.path == "/worker_generate_stream":
            self._generate(handler, behavior, str(data.get("prompt", "")))
        elif request.path == "/worker_get_conv_template" and behavior.conv_template:
            handler.send_json({"conv": conv_json(behavior.conv_template)})
        elif request.path == "/model_details":
            handler.send_json({"context_length": behavior.context_length})
        elif request.path == "/count_token" and behavior.count_tokens is not None:
            handler.send_json({"count": behavior.count_tokens(str(data.get("prompt", ""))), "error_code": 0})
        elif request.path == "/worker_get_status":
            handler.send_json({"model_names": list(self.models), "speed": 1, "queue_length": 0})
        elif request.path == "/count_token":
            handler.send_bytes(b"Internal Server Error", "text/plain", 500)
        else:
            handler.send_json({"detail": "Not Found"}, 404)

    def _generate(self, handler: FakeHandler, behavior: WorkerBehavior, prompt: str) -> None:
        objects = self._objects(behavior, prompt)
        if behavior.die_after_chunks == 0:
            handler.abort()
            return
        handler.start_chunked("text/plain; charset=utf-8")
        for index, obj in enumerate(objects):
            if behavior.die_after_chunks is not None and index >= behavior.die_after_chunks:
                handler.abort()
                return
            if not self.pause(behavior.chunk_delay):
                handler.abort()
                return
            if index == behavior.hold_after_chunks and not self.hold():
                handler.abort()
                return
            handler.write_chunk(json.dumps(obj).encode() + b"\0")
        handler.end_chunked()

    @staticmethod
    def _objects(behavior: WorkerBehavior, prompt: str) -> list[dict[str, Any]]:
        """The cumulative objects of one answer, as FastChat's generate_stream_gate yields them."""
        if behavior.stream_texts is not None:
            texts = list(behavior.stream_texts)
        else:
            reply = behavior.reply(prompt) if callable(behavior.reply) else behavior.reply
            size = max(1, behavior.chunk_size)
            texts = [reply[:end] for end in range(size, len(reply) + size, size)] or [""]
        objects: list[dict[str, Any]] = [
            {"text": text, "error_code": 0, "usage": {"completion_tokens": i}, "finish_reason": None}
            for i, text in enumerate(texts, 1)
        ]
        if behavior.finish_reason is not None:
            objects.append(objects[-1] | {"finish_reason": behavior.finish_reason})
        if behavior.error_code is not None:
            error = {"text": f"{SERVER_ERROR_MSG}\n\n(injected failure)", "error_code": behavior.error_code}
            objects = [*objects[: behavior.error_after_chunks], error]
        return objects


class FakeController(FakeServer):
    """The controller: knows which worker URLs serve which model and hands them out in turn."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._workers: dict[str, list[str]] = {}
        self._turns: dict[str, int] = {}

    def register(self, worker: FakeWorker | str, models: tuple[str, ...] | None = None) -> None:
        """Register a started FakeWorker (or any URL, e.g. a dead one) for its models."""
        url = worker if isinstance(worker, str) else worker.url
        names = models if models is not None else () if isinstance(worker, str) else worker.models
        with self._lock:
            for name in names:
                self._workers.setdefault(name, []).append(url)

    def unregister(self, url: str) -> None:
        with self._lock:
            for urls in self._workers.values():
                while url in urls:
                    urls.remove(url)

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        data = request.json if isinstance(request.json, dict) else {}
        if request.path == "/test_connection":
            handler.send_json("success")
        elif request.method != "POST":
            handler.send_json({"detail": "Method Not Allowed"}, 405)
        elif request.path in ("/list_models", "/list_language_models"):
            with self._lock:
                models = sorted(name for name, urls in self._workers.items() if urls)
            handler.send_json({"models": models})
        elif request.path == "/get_worker_address":
            handler.send_json({"address": self._next_address(str(data.get("model", "")))})
        elif request.path == "/refresh_all_workers":
            handler.send_json(None)
        else:
            handler.send_json({"detail": "Not Found"}, 404)

    def _next_address(self, model: str) -> str:
        with self._lock:
            urls = self._workers.get(model) or []
            if not urls:
                return ""
            turn = self._turns.get(model, 0)
            self._turns[model] = turn + 1
            return urls[turn % len(urls)]
