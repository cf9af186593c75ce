"""A loopback OpenAI-compatible chat server for `make bench-tools` on the CPU: a GGUF model through
llama-cpp-python, with function calling in the model's own format.

Why not llama-cpp-python's own server: its `chatml-function-calling` chat format (0.3.36) renders only
the system, user and assistant messages — a `tool` message (a tool's result) never reaches the model —
and after a tool round, when the model chooses to answer in words, that answer is held to a grammar
that allows only another call or the end; with its default chat format, the tools are shown to the
model but its `<tool_call>` answers come back as plain text, never as `tool_calls`. So this server
renders each request with the model's own chat template (from the GGUF's metadata: Qwen2.5's shows the
tools, the calls and the `<tool_response>`s), and turns the `<tool_call>{"name": …, "arguments": …}
</tool_call>` blocks the model writes into OpenAI's streamed `tool_calls` — what vLLM's `hermes` tool
parser does for Qwen2.5 in production. Greedy decoding (temperature 0), one request at a time.

It needs llama-cpp-python, which is not one of the bot's dependencies (a C++ build): in a venv of its
own, `pip install llama-cpp-python==0.3.36 jinja2`, then

    VENV/bin/python bench/qwen_tools_server.py MODEL.gguf --port 8089
    BENCH_LLM_BASE_URL=http://127.0.0.1:8089/v1 BENCH_LLM_MODEL=qwen make bench-tools
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

STOPS = ["<|im_end|>", "<|endoftext|>"]


class Model:
    def __init__(self, path: str, context: int, threads: int) -> None:
        from llama_cpp import Llama  # type: ignore[import-not-found,unused-ignore]  # not a bot dependency

        self.llm = Llama(path, n_ctx=context, n_threads=threads, verbose=False)
        source = self.llm.metadata["tokenizer.chat_template"]
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
        self.template = environment.from_string(source)
        self.lock = threading.Lock()

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        shown = []
        for message in messages:
            message = dict(message, content=message.get("content") or "")
            if message.get("tool_calls"):  # the template writes the arguments as an object
                message["tool_calls"] = [_decoded(call) for call in message["tool_calls"]]
            shown.append(message)
        return str(self.template.render(messages=shown, tools=tools or None, add_generation_prompt=True))

    def complete(self, prompt: str, max_tokens: int) -> tuple[str, str]:
        with self.lock:
            result = self.llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=0.0, stop=STOPS, repeat_penalty=1.05
            )
        choice = result["choices"][0]
        return choice["text"], choice.get("finish_reason") or "stop"


def _decoded(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function", {}))
    with contextlib.suppress(ValueError):
        function["arguments"] = json.loads(function.get("arguments") or "{}")
    return dict(call, function=function)


def _decode(decoder: json.JSONDecoder, text: str, start: int) -> tuple[Any, int]:
    """The JSON object at `start`, or one with its last braces closed (a small model's call often
    ends one `}` short, right before `</tool_call>`); (None, start) if neither reads."""
    for missing in ("", "}", "}}"):
        try:
            found, end = decoder.raw_decode(text[start:] + missing)
        except ValueError:
            continue
        return found, start + min(end, len(text) - start)
    return None, start


def parse_calls(text: str, names: set[str]) -> tuple[str, list[dict[str, str]]]:
    """The words before the first call, and the calls (name, arguments as JSON text): each JSON object
    of the form {"name": a tool offered, "arguments": …}. `<tool_call>` and `</tool_call>` are special
    tokens of Qwen's vocabulary, which llama.cpp leaves out of the text: the objects are all that shows."""
    calls: list[tuple[dict[str, str], int]] = []
    first: int | None = None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        if calls and match.start() < calls[-1][1]:
            continue  # inside the call just read
        found, end = _decode(decoder, text, match.start())
        if isinstance(found, dict) and found.get("name") in names and "arguments" in found:
            arguments = found["arguments"]
            as_text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            calls.append(({"name": found["name"], "arguments": as_text}, end))
            first = match.start() if first is None else first
    words = text[:first] if first is not None else text
    return words.replace("<tool_call>", "").strip(), [call for call, _ in calls]


def handler_for(model: Model, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._json({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "bench"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            offered = body.get("tools") if body.get("tool_choice") != "none" else None
            started = time.perf_counter()
            text, finish = model.complete(
                model.prompt(body["messages"], offered), int(body.get("max_tokens") or 512)
            )
            names = {tool["function"]["name"] for tool in offered or []}
            words, calls = parse_calls(text, names) if offered else (text, [])
            print(
                f"{time.perf_counter() - started:6.1f}s tools={bool(offered)} calls={len(calls)}", flush=True
            )
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
            if words:
                deltas.append({"content": words})
            for index, call in enumerate(calls):
                deltas.append(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": f"call_{uuid.uuid4().hex[:12]}",
                                "type": "function",
                                "function": call,
                            }
                        ]
                    }
                )
            if calls:
                finish = "tool_calls"
            if body.get("stream"):
                self._stream(deltas, finish)
            else:
                message = {"role": "assistant", "content": words or None}
                self._json(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    }
                )

        def _stream(self, deltas: list[dict[str, Any]], finish: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            chunk_id, now = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
            for delta, reason in [*((d, None) for d in deltas), ({}, finish)]:
                chunk = {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": now,
                    "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
                }
                self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def _json(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a GGUF file whose chat template knows tools (Qwen2.5)")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--name", default="qwen")
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = Model(args.model, args.context, args.threads)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(model, args.name))
    print(f"serving {args.model} as {args.name} on http://127.0.0.1:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
