"""FakeOpenAI: a loopback OpenAI-compatible server (base URL `fake.url + "/v1"`) for the real `openai` SDK."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest, parse_multipart

Reply = str | Callable[[list[dict[str, Any]]], str]
#: the calls a model makes: (name, arguments as the JSON text the model writes — maybe not JSON)
FakeCall = tuple[str, str]
#: given the messages so far, the calls to make (streamed as `tool_calls`), or [] to answer in words
ToolScript = Callable[[list[dict[str, Any]]], list[FakeCall]]

MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
ERROR_BODIES: dict[int, tuple[str, str | None, str]] = {
    400: (
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is exceeded.",
    ),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class Behavior:
    """How the fake answers; change it with `FakeOpenAI.set_behavior(**fields)`.

    `fail_after_chunks`: cut the connection after N SSE events (the first, role-only chunk counts).
    `scope`: endpoint paths (e.g. "/v1/chat/completions") that `fail_status` and `hang` apply to;
    empty means every /v1 endpoint. `fail_times`: fail only the next N requests (None: all).
    `retry_after`: seconds sent as `retry-after-ms` with failures (the SDK then waits that long
    instead of its 0.5-8 s backoff). `api_key`: when set, other bearer tokens get a 401.
    `reasoning`: a reasoning model's thinking, streamed before the answer as `reasoning_field` deltas
    (`reasoning_content`, or `reasoning`), `reasoning_chunk_delay` seconds apart (None: chunk_delay).
    `hold_after_chunks`: after that many SSE events, the stream waits until `release()` (a slow answer
    whose pace the test decides, not the clock). `vision_models`: when set, a request with an image part
    for another model gets a 400, as from a model that takes no images. `tool_script`: a model that calls
    functions: when a request offers `tools` (and not `tool_choice: none`), the calls it returns are
    streamed as `tool_calls` deltas (the arguments in pieces, parallel calls interleaved), finishing with
    `tool_calls`; an empty list, or a request without tools, gets the reply in words. `tool_preamble`: words
    the model streams before its calls (「我先算一下。」). `tool_calls_whole`: each call streamed whole in
    one delta with no `index`, as Gemini's OpenAI-compatible endpoint sends them.
    """

    reply: Reply | None = None
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 4
    fail_status: int | None = None
    fail_times: int | None = None
    retry_after: float | None = None
    fail_after_chunks: int | None = None
    hang: bool = False
    scope: tuple[str, ...] = ()
    finish_reason: str = "stop"
    #: end the stream cleanly but without the finish chunk and `data: [DONE]` (a proxy that cut it)
    end_without_done: bool = False
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "whisper-1")
    transcript: str = "你好，这是一段语音"
    flagged_words: tuple[str, ...] = ()
    api_key: str | None = None
    reasoning: str = ""
    reasoning_field: str = "reasoning_content"
    reasoning_chunk_delay: float | None = None
    hold_after_chunks: int | None = None
    vision_models: tuple[str, ...] = ()
    tool_script: ToolScript | None = None
    tool_preamble: str = ""
    tool_calls_whole: bool = False


@dataclass(frozen=True)
class Transcription:
    filename: str | None
    data: bytes
    model: str
    fields: dict[str, str]


def tiny_png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid PNG built with zlib/struct only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def message_text(message: dict[str, Any]) -> str:
    """Text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _has_image(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def echo(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return "echo: " + (message_text(users[-1]) if users else "")


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    kind, code, default = ERROR_BODIES.get(status, ("server_error", None, f"HTTP {status}"))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


class FakeOpenAI(FakeServer):
    """Chat completions (stream and not), models, transcriptions, image generation, moderations."""

    def __init__(self, **behavior: Any) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._behavior = Behavior(**behavior)
        self._transcriptions: list[Transcription] = []
        self._fails_done = 0
        #: streams the client closed before their end
        self.hangups = 0

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def behavior(self) -> Behavior:
        with self._lock:
            return self._behavior

    def set_behavior(self, **changes: Any) -> None:
        """Replace some fields of the current Behavior (resets the `fail_times` counter)."""
        with self._lock:
            self._behavior = dataclasses.replace(self._behavior, **changes)
            self._fails_done = 0

    def reset(self) -> None:
        self.set_behavior(**{f.name: f.default for f in dataclasses.fields(Behavior)})
        self.released.clear()
        self.holding.clear()

    def image_parts(self) -> list[dict[str, Any]]:
        """Every image part of every chat request (the vision model's inputs)."""
        return [
            part
            for body in self.chat_requests()
            for message in body.get("messages", [])
            if isinstance(message, dict) and isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        ]

    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every chat completion request (messages, model, max_tokens, stream...)."""
        return [r.json for r in self.requests_to("/v1/chat/completions") if isinstance(r.json, dict)]

    @property
    def transcriptions(self) -> list[Transcription]:
        with self._lock:
            return list(self._transcriptions)

    # ---- dispatch ----------------------------------------------------------------------------------
    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        behavior = self.behavior
        routes: dict[tuple[str, str], Callable[[FakeHandler, RecordedRequest, Behavior], None]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/audio/transcriptions"): self._transcribe,
            ("POST", "/v1/images/generations"): self._image,
            ("POST", "/v1/moderations"): self._moderate,
        }
        route = routes.get((request.method, request.path))
        if route is None:
            handler.send_json(error_body(404, f"Unknown url {request.path}"), 404)
            return
        if self._refused(handler, request, behavior):
            return
        route(handler, request, behavior)

    def _refused(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> bool:
        """Apply api_key, hang and fail_status; True when the request has been dealt with."""
        if behavior.api_key and request.headers.get("authorization") != f"Bearer {behavior.api_key}":
            handler.send_json(error_body(401), 401)
            return True
        if behavior.scope and request.path not in behavior.scope:
            return False
        if behavior.hang:
            self.stopping.wait()
            handler.abort()
            return True
        if behavior.fail_status is not None and self._take_failure(behavior):
            extra = {"retry-after-ms": str(int(behavior.retry_after * 1000))} if behavior.retry_after else {}
            handler.send_json(error_body(behavior.fail_status), behavior.fail_status, extra)
            return True
        return False

    def _take_failure(self, behavior: Behavior) -> bool:
        with self._lock:
            if behavior.fail_times is not None and self._fails_done >= behavior.fail_times:
                return False
            self._fails_done += 1
            return True

    # ---- chat --------------------------------------------------------------------------------------
    def _chat(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> None:
        data = request.json if isinstance(request.json, dict) else {}
        messages = [m for m in data.get("messages", []) if isinstance(m, dict)]
        if not messages:
            handler.send_json(error_body(400, "messages is required"), 400)
            return
        model = str(data.get("model", "gpt-4o-mini"))
        if behavior.vision_models and model not in behavior.vision_models and _has_image(messages):
            handler.send_json(error_body(400, f"Model {model} does not support image inputs."), 400)
            return
        calls = self._tool_calls(behavior, data, messages)
        if calls and data.get("stream"):
            self._stream_tool_calls(handler, model, calls, behavior.tool_preamble, behavior.tool_calls_whole)
            return
        reply = behavior.reply or echo
        text = reply(messages) if callable(reply) else reply
        if data.get("stream"):
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            self._stream(
                handler, behavior, model, text, self._usage(messages, text) if include_usage else None
            )
        elif self.pause(behavior.first_token_delay):
            handler.send_json(self._completion(behavior, model, text, self._usage(messages, text)))
        else:
            handler.abort()

    @staticmethod
    def _tool_calls(
        behavior: Behavior, data: dict[str, Any], messages: list[dict[str, Any]]
    ) -> list[FakeCall]:
        offered = bool(data.get("tools")) and data.get("tool_choice") != "none"
        return behavior.tool_script(messages) if offered and behavior.tool_script is not None else []

    def _stream_tool_calls(
        self, handler: FakeHandler, model: str, calls: list[FakeCall], preamble: str = "", whole: bool = False
    ) -> None:
        """The calls as a server streams them: the preamble's words, then each call's id and name, then
        its arguments in pieces of 3 characters, the calls' pieces interleaved (parallel calls); `whole`:
        each call in one delta, id, name and arguments, without an `index`."""
        base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return base | {
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            }

        events = [chunk({"role": "assistant", "content": None})]
        events += [chunk({"content": preamble[i : i + 4]}) for i in range(0, len(preamble), 4)]
        for index, (name, arguments) in enumerate(calls):
            if whole:
                function = {"name": name, "arguments": arguments}
                call_id = f"call_{secrets.token_hex(6)}"
                events.append(
                    chunk({"tool_calls": [{"id": call_id, "type": "function", "function": function}]})
                )
                continue
            function = {"name": name, "arguments": ""}
            call = {
                "index": index,
                "id": f"call_{secrets.token_hex(6)}",
                "type": "function",
                "function": function,
            }
            events.append(chunk({"tool_calls": [call]}))
        pieces = [] if whole else [[args[i : i + 3] for i in range(0, len(args), 3)] for _, args in calls]
        for step in range(max((len(p) for p in pieces), default=0)):
            for index, parts in enumerate(pieces):
                if step < len(parts):
                    events.append(
                        chunk({"tool_calls": [{"index": index, "function": {"arguments": parts[step]}}]})
                    )
        events.append(chunk({}, "tool_calls"))
        handler.start_chunked("text/event-stream; charset=utf-8", headers={"Cache-Control": "no-cache"})
        for event in events:
            handler.write_chunk(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")
        handler.write_chunk(b"data: [DONE]\n\n")
        handler.end_chunked()

    @staticmethod
    def _usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
        prompt = sum(len(message_text(m)) for m in messages)
        return {"prompt_tokens": prompt, "completion_tokens": len(text), "total_tokens": prompt + len(text)}

    @staticmethod
    def _completion(behavior: Behavior, model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": behavior.finish_reason}
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }

    def _stream(
        self, handler: FakeHandler, behavior: Behavior, model: str, text: str, usage: dict[str, int] | None
    ) -> None:
        """Headers and the role chunk at once, then the content after `first_token_delay`."""
        handler.start_chunked("text/event-stream; charset=utf-8", headers={"Cache-Control": "no-cache"})
        events = self._chunks(behavior, model, text, usage)
        thinking = len(self._reasoning_events(behavior))
        for index, event in enumerate(events):
            cut = behavior.fail_after_chunks is not None and index >= behavior.fail_after_chunks
            delay = behavior.first_token_delay if index == 1 else behavior.chunk_delay if index > 1 else 0.0
            if 1 <= index <= thinking and behavior.reasoning_chunk_delay is not None:
                delay = behavior.reasoning_chunk_delay
            if index == behavior.hold_after_chunks and not self.hold(handler.client_gone):
                handler.abort()
                return
            if cut or not self.pause(delay):
                handler.abort()
                return
            try:
                handler.write_chunk(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")
            except (BrokenPipeError, ConnectionResetError):
                with self._lock:
                    self.hangups += 1  # the client closed the stream before its end
                return
        if not behavior.end_without_done:
            handler.write_chunk(b"data: [DONE]\n\n")
        handler.end_chunked()

    @staticmethod
    def _chunks(
        behavior: Behavior, model: str, text: str, usage: dict[str, int] | None
    ) -> list[dict[str, Any]]:
        base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return base | {"choices": [choice]}

        size = max(1, behavior.chunk_size)
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk(delta) for delta in FakeOpenAI._reasoning_events(behavior)]
        events += [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
        if not behavior.end_without_done:
            events.append(chunk({}, behavior.finish_reason))
        if usage is not None:
            events.append(base | {"choices": [], "usage": usage})
        return events

    @staticmethod
    def _reasoning_events(behavior: Behavior) -> list[dict[str, Any]]:
        """The deltas of the thinking (streamed before the answer's content)."""
        size, thought = max(1, behavior.chunk_size), behavior.reasoning
        field = behavior.reasoning_field
        return [{"content": None, field: thought[i : i + size]} for i in range(0, len(thought), size)]

    # ---- other endpoints ---------------------------------------------------------------------------
    def _models(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> None:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in behavior.models
        ]
        handler.send_json({"object": "list", "data": data})

    def _transcribe(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> None:
        parts = parse_multipart(request.body, request.headers.get("content-type", ""))
        upload = parts.get("file")
        if upload is None or "model" not in parts:
            handler.send_json(error_body(400, "file and model are required"), 400)
            return
        fields = {name: part.data.decode(errors="replace") for name, part in parts.items() if name != "file"}
        with self._lock:
            self._transcriptions.append(Transcription(upload.filename, upload.data, fields["model"], fields))
        if fields.get("response_format") == "text":
            handler.send_bytes(behavior.transcript.encode(), "text/plain; charset=utf-8")
        else:
            handler.send_json({"text": behavior.transcript})

    def _image(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> None:
        data = request.json if isinstance(request.json, dict) else {}
        count = int(data.get("n") or 1)
        image = base64.b64encode(tiny_png()).decode()
        items = [{"b64_json": image, "revised_prompt": data.get("prompt", "")} for _ in range(count)]
        handler.send_json({"created": int(time.time()), "data": items})

    def _moderate(self, handler: FakeHandler, request: RecordedRequest, behavior: Behavior) -> None:
        data = request.json if isinstance(request.json, dict) else {}
        inputs = data.get("input", "")
        texts = [str(i) for i in inputs] if isinstance(inputs, list) else [str(inputs)]
        results = [self._moderation(text, behavior) for text in texts]
        model = data.get("model") or "omni-moderation-latest"
        handler.send_json({"id": f"modr-{secrets.token_hex(8)}", "model": model, "results": results})

    @staticmethod
    def _moderation(text: str, behavior: Behavior) -> dict[str, Any]:
        flagged = any(word and word in text for word in behavior.flagged_words)
        return {
            "flagged": flagged,
            "categories": {c: flagged and c == "harassment" for c in MODERATION_CATEGORIES},
            "category_scores": {
                c: (0.99 if flagged and c == "harassment" else 0.0001) for c in MODERATION_CATEGORIES
            },
            "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
        }
