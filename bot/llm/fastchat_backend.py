"""The `fastchat` backend: FastChat's own controller/worker HTTP protocol (fschat 0.2.36).

The controller (FASTCHAT_CONTROLLER_URL) names a worker for a model and load-balances between the
workers that serve it. The prompt is built here, as FastChat's OpenAI-compatible server does, with
the worker's own conversation template (`fastchat.conversation`), and trimmed to fit the worker's
context length: a worker silently drops the *oldest* prompt tokens otherwise, system prompt first.
The answer streams back as JSON objects each ended by a NUL byte, whose "text" is the whole answer
so far; only the new suffix is yielded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions
from fastchat.constants import ErrorCode
from fastchat.conversation import Conversation, SeparatorStyle, get_conv_template
from requests.adapters import HTTPAdapter

from bot.config import Settings
from bot.llm.base import ChatMessage, FailureKind, LLMError, Piece, check_finished, stream_object
from bot.llm.reasoning import ThinkFilter, opened_by_template

log = logging.getLogger(__name__)

#: how long the controller's model list is reused
MODELS_TTL = 10.0
#: how long a worker's template and context length are reused (a restarted worker may change them)
WORKER_INFO_TTL = 300.0
#: below this many answer tokens left in the context, the question is refused as too long
MIN_NEW_TOKENS = 64
DELIMITER = b"\0"
#: a partly decoded multi-byte character (common in Chinese) shows as U+FFFD until its next token
REPLACEMENT_CHAR = "\ufffd"
ERROR_KINDS: dict[int, FailureKind] = {
    ErrorCode.CONTROLLER_NO_WORKER: "unavailable",
    ErrorCode.CONTROLLER_WORKER_TIMEOUT: "timeout",
    ErrorCode.ENGINE_OVERLOADED: "unavailable",
    ErrorCode.RATE_LIMIT: "unavailable",
}


class WorkerGone(Exception):
    """The worker's connection failed or its stream ended early: another worker may answer."""


@dataclass(frozen=True)
class WorkerInfo:
    template: Conversation
    context_length: int | None


def conversation_from_dict(data: dict[str, Any]) -> Conversation:
    """Rebuild the Conversation a worker sent as JSON (unknown fields ignored, sep_style int -> enum)."""
    known = {field.name for field in dataclasses.fields(Conversation)}
    fields = {key: value for key, value in data.items() if key in known}
    fields["roles"] = tuple(fields.get("roles") or ("USER", "ASSISTANT"))
    fields["messages"] = [list(message) for message in fields.get("messages") or []]
    if "sep_style" in fields:
        style = fields["sep_style"]
        fields["sep_style"] = SeparatorStyle[style] if isinstance(style, str) else SeparatorStyle(style)
    return Conversation(**fields)


def render_prompt(template: Conversation, messages: list[ChatMessage]) -> str:
    """OpenAI-format messages through a FastChat template, ending with the assistant's open turn."""
    conv = template.copy()
    for message in messages:
        role, content = message.get("role"), message.get("content", "")
        if role == "system":
            conv.set_system_message(content)
        elif role in ("user", "assistant"):
            conv.append_message(conv.roles[0 if role == "user" else 1], content)
    conv.append_message(conv.roles[1], None)
    return str(conv.get_prompt())


def stop_strings(stop: Any) -> list[str]:
    """A template's stop_str (None, a string or a list) as the list the worker accepts."""
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else [str(item) for item in stop]


def estimate_tokens(text: str) -> int:
    """A rough token count when the worker cannot count: ~4 ASCII chars per token, but CJK
    characters cost one to three tokens each in Llama-style vocabularies (len/4 would be far too low)."""
    ascii_chars = sum(1 for char in text if char.isascii())
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars) * 3 // 2


def drop_oldest_turn(turns: list[ChatMessage]) -> list[ChatMessage]:
    """Remove the oldest message and any replies to it; the last message always stays."""
    rest = turns[1:]
    while len(rest) > 1 and rest[0].get("role") != "user":
        rest = rest[1:]
    return rest


def split_stream(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a worker stream; raise WorkerGone when it ends inside an object."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *objects, buffer = buffer.split(DELIMITER)
        for raw in objects:
            if raw.strip():
                yield parse_object(raw)
    if buffer.strip():
        raise WorkerGone(f"stream ended inside an object ({len(buffer)} bytes unterminated)")


def parse_object(raw: bytes) -> dict[str, Any]:
    return stream_object(raw, "FastChat worker")


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The body of a 200 answer when it is a JSON object, else None."""
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def stream_error(code: int, text: Any, address: str) -> LLMError:
    """An error_code the worker (or a controller acting as worker) put in its stream."""
    try:
        name = ErrorCode(code).name
    except ValueError:
        name = "UNKNOWN"
    detail = f"FastChat worker {address} error {code} {name}: {str(text or '').strip()[:300]}"
    return LLMError(ERROR_KINDS.get(code, "failed"), detail)


def is_timeout(exc: requests.RequestException) -> bool:
    """A read timeout; requests reports one met while streaming as a ConnectionError wrapping it."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.Timeout):
        return True
    return bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)


class FastChatBackend:
    name = "fastchat"

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.controller = settings.fastchat_controller_url
        self.model = settings.fastchat_model
        self.timeout = settings.fastchat_timeout
        self.fallback_template = settings.fastchat_conv_template
        self.max_tokens = settings.llm_max_tokens
        self.temperature = settings.llm_temperature
        self.think_opened = settings.think_opened_by_template
        self.session = session or self._make_session(settings.worker_threads)
        self._lock = threading.Lock()
        self._models: tuple[float, list[str]] | None = None
        self._workers: dict[tuple[str, str], tuple[float, WorkerInfo]] = {}

    @staticmethod
    def _make_session(threads: int) -> requests.Session:
        """One pool shared by the job threads, large enough that none of them discards a connection."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=max(10, threads))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # ---- the ChatBackend interface --------------------------------------------------------------
    def models(self) -> list[str]:
        with self._lock:
            if self._models is not None and self._models[0] > time.monotonic():
                return list(self._models[1])
        names = self._post_controller("/list_models", {}).get("models")
        if not isinstance(names, list):
            raise LLMError("unavailable", f"FastChat controller sent no model list: {names!r}")
        models = sorted(str(name) for name in names)
        with self._lock:
            self._models = (time.monotonic() + MODELS_TTL, models)
        return list(models)

    def stream(
        self, messages: list[ChatMessage], *, model: str | None = None
    ) -> Generator[Piece, None, None]:
        """Retry once on another worker when the first one fails before its first piece. A reasoning
        model's <think>…</think> comes out as Reasoning pieces."""
        name = model or self.model
        dead: str | None = None
        for attempt in range(2):
            address = self._worker_address(name, avoid=dead)
            started, thoughts = False, ThinkFilter(opened_by_template(self.think_opened, name))
            try:
                for text in self._stream_once(address, name, messages):
                    started = True
                    yield from thoughts.feed(text)
                yield from thoughts.finish()
                return
            except WorkerGone as exc:
                self._forget(address)
                if started:
                    raise LLMError("failed", f"FastChat worker {address} died mid-answer: {exc}") from exc
                if attempt:
                    raise LLMError("unavailable", f"FastChat workers for {name} failed: {exc}") from exc
                log.warning("FastChat worker %s failed before answering (%s); retrying", address, exc)
                dead = address

    def close(self) -> None:
        self.session.close()

    # ---- one attempt on one worker ----------------------------------------------------------------
    def _stream_once(self, address: str, model: str, messages: list[ChatMessage]) -> Iterator[str]:
        info = self._worker_info(address, model)
        prompt, max_new_tokens = self._fit(address, model, info, messages)
        payload = {
            "model": model,
            "prompt": prompt,
            "temperature": self.temperature,
            "top_p": 1.0,
            "max_new_tokens": max_new_tokens,
            "stop": stop_strings(info.template.stop_str),
            "stop_token_ids": list(info.template.stop_token_ids or []),
            "echo": False,
        }
        yield from self._generate(address, payload)

    def _generate(self, address: str, payload: dict[str, Any]) -> Iterator[str]:
        sent, finish_reason = "", None
        received = False
        try:
            with self.session.post(
                address + "/worker_generate_stream", json=payload, stream=True, timeout=self._timeouts
            ) as response:
                if response.status_code != 200:
                    raise LLMError("failed", f"FastChat worker {address}: HTTP {response.status_code}")
                for data in split_stream(response.iter_content(chunk_size=None)):
                    received = True
                    if data.get("error_code"):
                        raise stream_error(int(data["error_code"]), data.get("text"), address)
                    # FastChat's own server does the same: drop U+FFFD, slice by length, never go back
                    text = str(data.get("text") or "").replace(REPLACEMENT_CHAR, "")
                    finish_reason = data.get("finish_reason") or finish_reason
                    if len(text) > len(sent):
                        yield text[len(sent) :]
                        sent = text
        except requests.RequestException as exc:
            raise self._worker_error(address, exc) from exc
        if not received:
            raise WorkerGone("empty stream")
        check_finished(finish_reason)

    def _fit(
        self, address: str, model: str, info: WorkerInfo, messages: list[ChatMessage]
    ) -> tuple[str, int]:
        """The prompt and max_new_tokens: oldest turns dropped, then fewer answer tokens, to fit."""
        system = [message for message in messages if message.get("role") == "system"]
        turns = [message for message in messages if message.get("role") != "system"]
        count = self._token_counter(address, model)
        while True:
            prompt = render_prompt(info.template, system + turns)
            if info.context_length is None:
                return prompt, self.max_tokens
            used = count(prompt)
            room = info.context_length - used - 1  # the worker keeps context - max_new - 1 prompt tokens
            if room >= self.max_tokens:
                return prompt, self.max_tokens
            if len(turns) > 1:
                turns = drop_oldest_turn(turns)
                log.info("FastChat %s: dropped old turns to fit %s tokens", model, info.context_length)
            elif room >= min(MIN_NEW_TOKENS, self.max_tokens):
                return prompt, room
            else:
                detail = f"question too long: {used} prompt tokens, {model} context is {info.context_length}"
                raise LLMError("failed", detail)

    # ---- worker details ---------------------------------------------------------------------------
    def _worker_info(self, address: str, model: str) -> WorkerInfo:
        key = (address, model)
        with self._lock:
            cached = self._workers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        info = WorkerInfo(self._template(address, model), self._context_length(address, model))
        with self._lock:
            self._workers[key] = (time.monotonic() + WORKER_INFO_TTL, info)
        return info

    def _forget(self, address: str) -> None:
        with self._lock:
            for key in [key for key in self._workers if key[0] == address]:
                del self._workers[key]

    def _template(self, address: str, model: str) -> Conversation:
        data = self._post_worker(address, "/worker_get_conv_template", {"model": model})
        conv = data.get("conv") if data else None
        if isinstance(conv, dict):
            try:
                return conversation_from_dict(conv)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("FastChat worker %s sent an unusable template (%s)", address, exc)
        return get_conv_template(self.fallback_template)

    def _context_length(self, address: str, model: str) -> int | None:
        data = self._post_worker(address, "/model_details", {"model": model})
        length = data.get("context_length") if data else None
        return length if isinstance(length, int) and length > 0 else None

    def _token_counter(self, address: str, model: str) -> Callable[[str], int]:
        """Counts with the worker's tokenizer; after one failure, estimates for the rest of the request."""
        failed = False

        def count(prompt: str) -> int:
            nonlocal failed
            if not failed:
                data = self._post_worker(address, "/count_token", {"model": model, "prompt": prompt})
                tokens = data.get("count") if data and not data.get("error_code") else None
                if isinstance(tokens, int):
                    return tokens
                failed = True
                log.warning("FastChat worker %s cannot count tokens; estimating", address)
            return estimate_tokens(prompt)

        return count

    # ---- HTTP ---------------------------------------------------------------------------------------
    @property
    def _timeouts(self) -> tuple[float, float]:
        return (self.timeout, self.timeout)

    def _worker_address(self, model: str, avoid: str | None = None) -> str:
        """Ask the controller; when avoiding a dead worker, ask again a few times (it rotates)."""
        address = ""
        for _ in range(3 if avoid else 1):
            address = str(self._post_controller("/get_worker_address", {"model": model}).get("address") or "")
            if address != avoid:
                break
        if not address:
            log.warning("no FastChat worker serves model %s (controller %s)", model, self.controller)
            raise LLMError("unavailable", f"no FastChat worker serves model {model}")
        return address.rstrip("/")

    def _post_controller(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = self.controller + path
        try:
            response = self.session.post(url, json=payload, timeout=self._timeouts)
        except requests.RequestException as exc:
            raise LLMError("unavailable", f"FastChat controller {url} unreachable: {exc}") from exc
        data = json_object(response)
        if data is None:
            raise LLMError("unavailable", f"FastChat controller {url}: HTTP {response.status_code}")
        return data

    def _post_worker(self, address: str, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A worker's JSON answer, or None when it answers with an error (the caller falls back)."""
        try:
            response = self.session.post(address + path, json=payload, timeout=self._timeouts)
        except requests.RequestException as exc:
            raise self._worker_error(address, exc) from exc
        return json_object(response)

    def _worker_error(self, address: str, exc: requests.RequestException) -> Exception:
        if is_timeout(exc):
            return LLMError("timeout", f"FastChat worker {address} silent for {self.timeout}s")
        return WorkerGone(f"{type(exc).__name__}: {exc}")
