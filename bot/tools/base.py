"""What every tool is: a name, a JSON schema with Chinese descriptions, and a function from its
arguments to a short text. A tool raises ToolError with words for the model when it cannot answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.store.pages import Source

#: characters of a tool's result given to the model (and kept, shorter, in the history)
MAX_RESULT = 1000


class ToolError(Exception):
    """The tool cannot answer these arguments; the message is given to the model as the result."""


@dataclass(frozen=True)
class Found:
    """A result with the documents it was read from (the knowledge-base search), which the answer's
    sources then list."""

    text: str
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    #: the JSON schema of the arguments (an object)
    parameters: dict[str, Any]
    #: the result's text, or the text with its sources (Found)
    run: Callable[[dict[str, Any]], str | Found]
    #: asked before each answer: False leaves the tool out of that answer's offer (None: always offered)
    available: Callable[[], bool] | None = None

    def schema(self) -> dict[str, Any]:
        """The tool as OpenAI's `tools` list takes it."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


def number_text(value: float) -> str:
    """A number as a person reads it: integers whole (up to 30 digits), larger ones with 13 significant
    digits (as decimals, exact: a float cannot hold an integer of 309 digits), others with 12
    significant digits and no float noise (0.1 + 0.2 = 0.3)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"{Decimal(value):.12e}"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"
