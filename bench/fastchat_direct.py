"""The baselines of the FastChat overhead benchmark: the same answer without the bot around it.

Both are timed by `time_stream`, on the same text pieces the bot's job sees, cut into pages by
the bot's own PageSplitter, so that "first page" means the same text in every path:

* `WorkerClient.pieces`: plain HTTP to the worker's /worker_generate_stream with the payload the
  bot's backend would build (its conversation template, stop strings, greedy) — the floor;
* `FastChatBackend.stream` in this process — the bot's client without Redis, Dramatiq or WeChat;
  it separates what the client costs per request (controller lookup, token count) from the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from bot.answering.paging import PageSplitter
from bot.config import Settings, load_settings
from bot.llm.base import ChatMessage
from bot.llm.fastchat_backend import (
    REPLACEMENT_CHAR,
    FastChatBackend,
    conversation_from_dict,
    render_prompt,
    split_stream,
    stop_strings,
)

#: seconds to connect, and between two streamed chunks
TIMEOUT = 30.0


@dataclass(frozen=True)
class Timing:
    """One answer as its reader saw it, in seconds from the moment the request was made."""

    first_token: float | None  # None when the path cannot see tokens (the bot: WeChat gets pages)
    first_page: float  # the first page is complete (the whole answer when it fits one page)
    total: float  # the last byte of the answer
    text: str


def time_stream(pieces: Iterable[str], budget: int, started: float) -> Timing:
    """Consume `pieces` (a lazy stream: the request happens inside), noting when things arrive.

    `started` is taken by the caller before the stream is created, so that the lookups and the
    prompt processing the stream does before its first piece count as waiting, as they do for a user.
    """
    splitter = PageSplitter(budget)
    first_token: float | None = None
    first_page: float | None = None
    parts: list[str] = []
    for piece in pieces:
        now = time.monotonic()
        if first_token is None and piece:
            first_token = now - started
        parts.append(piece)
        if splitter.feed(piece) and first_page is None:
            first_page = now - started
    total = time.monotonic() - started
    return Timing(first_token, total if first_page is None else first_page, total, "".join(parts))


class WorkerClient:
    """Talks to the one model worker directly, as a client with no bot would.

    The worker is looked up once (not per request, unlike the bot's backend): the baseline is
    the worker's own speed.
    """

    def __init__(self, controller_url: str, model: str) -> None:
        self.model = model
        self.session = requests.Session()
        address = self._post(controller_url + "/get_worker_address", {"model": model}).get("address")
        if not address:
            raise RuntimeError(f"the controller {controller_url} names no worker for {model}")
        self.address = str(address).rstrip("/")
        conv = self._post(self.address + "/worker_get_conv_template", {"model": model})["conv"]
        self.template = conversation_from_dict(conv)

    def payload(self, messages: list[ChatMessage], max_new_tokens: int) -> dict[str, Any]:
        """What FastChatBackend sends for these messages (greedy: every path writes the same tokens)."""
        return {
            "model": self.model,
            "prompt": render_prompt(self.template, messages),
            "temperature": 0.0,
            "top_p": 1.0,
            "max_new_tokens": max_new_tokens,
            "stop": stop_strings(self.template.stop_str),
            "stop_token_ids": list(self.template.stop_token_ids or []),
            "echo": False,
        }

    def pieces(self, payload: dict[str, Any]) -> Iterator[str]:
        """The new text of each streamed object (the worker sends the whole answer so far)."""
        url = self.address + "/worker_generate_stream"
        sent = ""
        with self.session.post(url, json=payload, stream=True, timeout=TIMEOUT) as response:
            response.raise_for_status()
            for data in split_stream(response.iter_content(chunk_size=None)):
                if data.get("error_code"):
                    raise RuntimeError(f"worker error {data['error_code']}: {data.get('text')}")
                text = str(data.get("text") or "").replace(REPLACEMENT_CHAR, "")
                if len(text) > len(sent):
                    yield text[len(sent) :]
                    sent = text

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the worker's tokenizer: one yardstick for every path's answer."""
        count = self._post(self.address + "/count_token", {"model": self.model, "prompt": text}).get("count")
        if not isinstance(count, int):
            raise RuntimeError(f"the worker could not count tokens: {count!r}")
        return count

    def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.session.post(url, json=payload, timeout=TIMEOUT)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise RuntimeError(f"{url} sent {type(data).__name__}, not an object")
        return data

    def close(self) -> None:
        self.session.close()


def bot_backend(controller_url: str, model: str, max_tokens: int) -> FastChatBackend:
    """The bot's backend with the bot's settings for this benchmark (Redis is never touched)."""
    settings: Settings = load_settings(
        wechat_token="bench",
        redis_url="redis://127.0.0.1:1/0",
        llm_backend="fastchat",
        fastchat_controller_url=controller_url,
        fastchat_model=model,
        fastchat_timeout=TIMEOUT,
        llm_max_tokens=max_tokens,
        llm_temperature=0.0,
    )
    return FastChatBackend(settings)
