"""LLM backends behind one interface (`ChatBackend`), and the one registry that knows each backend:
how to build it (`make_backend`) and which model it uses by default (`default_model`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.llm.base import ChatBackend, ChatMessage, LLMError

__all__ = ["ChatBackend", "ChatMessage", "LLMError", "default_model", "make_backend"]


@dataclass(frozen=True)
class BackendEntry:
    build: Callable[[Settings], ChatBackend]
    default_model: Callable[[Settings], str]


def _openai(settings: Settings) -> ChatBackend:
    from bot.llm.openai_backend import OpenAIBackend  # imported on use: the SDK is not light

    return OpenAIBackend(settings)


def _fastchat(settings: Settings) -> ChatBackend:
    from bot.llm.fastchat_backend import FastChatBackend

    return FastChatBackend(settings)


#: LLM_BACKEND → its entry
BACKENDS = {
    "openai": BackendEntry(_openai, lambda settings: settings.openai_model),
    "fastchat": BackendEntry(_fastchat, lambda settings: settings.fastchat_model),
}


def _entry(settings: Settings) -> BackendEntry:
    try:
        return BACKENDS[settings.llm_backend]
    except KeyError:
        raise ValueError(f"LLM_BACKEND={settings.llm_backend!r} is not available") from None


def make_backend(settings: Settings) -> ChatBackend:
    return _entry(settings).build(settings)


def default_model(settings: Settings) -> str:
    """The model answers use unless a user picked another with /model."""
    return _entry(settings).default_model(settings)
