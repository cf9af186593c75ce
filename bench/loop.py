"""The benchmarks' outside world on one asyncio loop in a thread of its own: a fake LLM (OpenAI's
streaming chat completions) and WeChat's side (signed pushes, 5 s attempts, retries).

One thread, no lock and no GIL handover between the two: when the fake LLM sends an answer's last
byte and when WeChat's side reads the reply are stamped by the same idle loop, so a delay of a few
milliseconds is measured as such (100 client threads and a threaded fake, as before, put their own
scheduling into the figures). Times are wall-clock (`time.time()`), shared with the bot's processes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from testing.fakes.openai_server import message_text
from testing.simulator import WeChatSimulator, parse_xml

HOST = "127.0.0.1"
T = TypeVar("T")


class Loop:
    """An event loop running in a daemon thread; `run` executes a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the fake LLM --------------------------------------------------------------------------------
@dataclass
class Script:
    """How the fake answers one question: `delay` seconds after the request arrived, or when `release`
    is set (whichever the benchmark uses), the whole answer at once."""

    delay: float = 0.0
    release: asyncio.Event | None = None


@dataclass
class Call:
    """One request to the fake: when it arrived, and when the answer's last byte went out."""

    question: str
    arrived: float
    finished: float | None = None


def answer_of(question: str) -> str:
    return "echo: " + question


class FakeLLM:
    """An OpenAI-compatible server (POST /v1/chat/completions, streamed) on the loop; answers
    `answer_of(question)`, timed by the question's Script."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.scripts: dict[str, Script] = {}
        self.calls: list[Call] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> FakeLLM:
        async def start() -> int:
            self.server = await asyncio.start_server(self._serve, HOST, 0)
            return int(self.server.sockets[0].getsockname()[1])

        self.port = self.loop.run(start(), 10)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()

        self.loop.run(stop(), 10)

    def calls_of(self, question: str) -> list[Call]:
        return [call for call in self.calls if call.question == question]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, body = request
                if method == "POST" and path.endswith("/chat/completions"):
                    await self._complete(json.loads(body), writer)
                else:
                    _respond(
                        writer, 404, b'{"error": {"message": "not here", "type": "invalid_request_error"}}'
                    )
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _complete(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        question = message_text(request["messages"][-1])
        call = Call(question, time.time())
        self.calls.append(call)
        script = self.scripts.get(question, Script())
        model = str(request.get("model", "fake"))
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        writer.write(head + _chunk(_event(model, {"role": "assistant", "content": ""})))
        await writer.drain()
        if script.release is not None:
            await script.release.wait()
        elif script.delay:
            await asyncio.sleep(max(0.0, call.arrived + script.delay - time.time()))
        tail = _event(model, {"content": answer_of(question)}) + _event(model, {}, finish="stop")
        writer.write(_chunk(tail + b"data: [DONE]\n\n") + b"0\r\n\r\n")
        call.finished = time.time()
        await writer.drain()


def _event(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _respond(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    """(method, path, body) of the next request on a keep-alive connection; None when it closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
    }
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, path, body


# --- WeChat's side ------------------------------------------------------------------------------
@dataclass
class Delivery:
    """One push as WeChat saw it: the attempt whose reply counted (None: none did) and when."""

    openid: str
    question: str
    sent: float  # the first attempt's request went out
    attempt: int | None = None
    received: float | None = None  # the reply that counted was read in full
    text: str | None = None  # the reply's Content ("" for `success`)
    problems: list[str] = field(default_factory=list)


class WeChat:
    """Pushes as WeChat makes them: signed (a fresh nonce and timestamp per attempt), one connection
    per attempt, `attempt_timeout` seconds each, up to `attempts` times with the same MsgId."""

    def __init__(
        self, port: int, token: str, appid: str, *, attempt_timeout: float = 5.0, attempts: int = 3
    ) -> None:
        self.port = port
        self.sim = WeChatSimulator(f"http://{HOST}:{port}/wechat", token, appid)
        self.attempt_timeout = attempt_timeout
        self.attempts = attempts

    async def push(self, openid: str, question: str) -> Delivery:
        body, encrypted = self.sim.envelope(self.sim.text_xml(openid, question))
        delivery = Delivery(openid, question, time.time())
        for attempt in range(1, self.attempts + 1):
            query = urlencode(self.sim.signed_params(openid, encrypted))
            try:
                status, reply = await asyncio.wait_for(
                    self._post(f"/wechat?{query}", body), self.attempt_timeout
                )
            except TimeoutError:
                continue  # WeChat hangs up and tries again
            except OSError as exc:
                delivery.problems.append(f"attempt {attempt}: {exc!r}")
                continue
            if status != 200:
                delivery.problems.append(f"attempt {attempt}: HTTP {status}")
                continue
            delivery.attempt, delivery.received = attempt, time.time()
            delivery.text = "" if reply.strip() in (b"", b"success") else _content(reply)
            return delivery
        return delivery

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await post(self.port, path, body)


async def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST on a connection of its own (as WeChat makes each attempt): the status and the body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        data = await (reader.readexactly(length) if length is not None else reader.read())
        return int(status_line.split()[1]), data
    finally:
        writer.close()


def _content(reply: bytes) -> str | None:
    try:
        return str(parse_xml(reply).get("Content", ""))
    except ValueError:
        return None


def new_openids(prefix: str, count: int) -> list[str]:
    """`count` openids no earlier run used (the benchmarks share one Redis per stack)."""
    run = secrets.token_hex(3)
    return [f"{prefix}-{run}-{n:04d}" for n in range(count)]
