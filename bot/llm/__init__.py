"""LLM backends behind one interface (`ChatBackend`); `make_backend` is the one place that chooses."""

from __future__ import annotations

from bot.config import Settings
from bot.llm.base import ChatBackend, ChatMessage, LLMError

__all__ = ["ChatBackend", "ChatMessage", "LLMError", "make_backend"]


def make_backend(settings: Settings) -> ChatBackend:
    if settings.llm_backend == "openai":
        from bot.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    if settings.llm_backend == "fastchat":
        from bot.llm.fastchat_backend import FastChatBackend

        return FastChatBackend(settings)
    raise ValueError(f"LLM_BACKEND={settings.llm_backend!r} is not available yet")
