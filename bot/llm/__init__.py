"""LLM backends behind one interface (`ChatBackend`), and the one registry that knows each backend:
how to build it (`make_backend`) and which model it uses by default (`default_model`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.llm.base import (
    ChatBackend,
    ChatMessage,
    LLMError,
    Piece,
    Reasoning,
    ToolCall,
    ToolCallingBackend,
    ToolCalls,
    ToolOffer,
)

__all__ = [
    "ChatBackend",
    "ChatMessage",
    "LLMError",
    "Piece",
    "Reasoning",
    "ToolCall",
    "ToolCallingBackend",
    "ToolCalls",
    "ToolOffer",
    "calls_tools",
    "default_model",
    "make_backend",
]


@dataclass(frozen=True)
class BackendEntry:
    build: Callable[[Settings], ChatBackend]
    default_model: Callable[[Settings], str]
    #: its models can call tools (the backend is a ToolCallingBackend)
    tool_calling: bool = False


def _openai(settings: Settings) -> ChatBackend:
    from bot.llm.openai_backend import OpenAIBackend  # imported on use: the SDK is not light

    return OpenAIBackend(settings)


def _fastchat(settings: Settings) -> ChatBackend:
    from bot.llm.fastchat_backend import FastChatBackend

    return FastChatBackend(settings)


#: LLM_BACKEND → its entry
BACKENDS = {
    "openai": BackendEntry(_openai, lambda settings: settings.openai_model, tool_calling=True),
    "fastchat": BackendEntry(_fastchat, lambda settings: settings.fastchat_model),
}


def _entry(settings: Settings) -> BackendEntry:
    try:
        return BACKENDS[settings.llm_backend]
    except KeyError:
        raise ValueError(f"LLM_BACKEND={settings.llm_backend!r} is not available") from None


def make_backend(settings: Settings) -> ChatBackend:
    return _entry(settings).build(settings)


def calls_tools(settings: Settings) -> bool:
    """Whether LLM_BACKEND's models can call tools, known without building the backend."""
    return _entry(settings).tool_calling


def default_model(settings: Settings) -> str:
    """The model answers use unless a user picked another with /model."""
    return _entry(settings).default_model(settings)
