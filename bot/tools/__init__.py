"""Built-in tools offered to models that can call functions (OpenAI-compatible `tools`): a calculator,
an equation solver, the normal distribution, dates, and the search of the knowledge base. The first
four are pure computation — no network, no files, no shell, no code — and the search only reads the
knowledge base; each is bounded in time and in output, and its errors go back to the model as text.

`ToolBox` is the registry of the enabled tools (TOOLS): their schemas for the request, and `call`,
which runs one call the model made and says how it went (for the metrics and the logs); `offered`
narrows it, before each answer, to the tools available then (no search of an empty knowledge base)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot import texts
from bot.knowledge.base import KnowledgeBase
from bot.llm.base import ChatMessage, ToolCalls
from bot.store.pages import Source
from bot.tools.base import MAX_RESULT, Found, ToolError, ToolSpec
from bot.tools.calculator import SPEC as CALCULATOR
from bot.tools.dates import spec as dates_spec
from bot.tools.equations import SPEC as EQUATIONS
from bot.tools.knowledge import spec as knowledge_spec
from bot.tools.normal import SPEC as NORMAL

log = logging.getLogger(__name__)

#: every built-in tool's name, in the order they are offered (TOOLS lists a subset)
TOOL_NAMES = ("calculator", "solve_equations", "normal_distribution", "dates", "search_knowledge")
#: rounds of tool calls one answer may make; the next request forbids tools (tool_choice=none)
MAX_ROUNDS = 3
#: calls run in one round (parallel calls); the others get an error
MAX_CALLS = 5
#: seconds of an answer after which no more tool rounds start (WeChat's 3 attempts last 15 s)
TOOL_BUDGET_SECONDS = 20.0
#: characters of each call's arguments and result in the history's note
NOTE_ARGUMENTS, NOTE_RESULT = 120, 200

Outcome = Literal["ok", "error", "bad_arguments", "unknown"]


@dataclass(frozen=True)
class ToolResult:
    name: str
    arguments: str
    text: str
    outcome: Outcome
    #: the documents the result was read from (a search of the knowledge base): the answer lists them
    sources: tuple[Source, ...] = ()


def build_specs(zone: ZoneInfo, knowledge: KnowledgeBase | None = None) -> dict[str, ToolSpec]:
    """Every tool that can be built: the search needs the process's knowledge base."""
    specs = [CALCULATOR, EQUATIONS, NORMAL, dates_spec(zone)]
    if knowledge is not None:
        specs.append(knowledge_spec(knowledge))
    return {spec.name: spec for spec in specs}


class ToolBox:
    def __init__(self, specs: list[ToolSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}

    @classmethod
    def enabled(cls, names: list[str], zone: ZoneInfo, knowledge: KnowledgeBase | None = None) -> ToolBox:
        known = build_specs(zone, knowledge)
        return cls([known[name] for name in TOOL_NAMES if name in names and name in known])

    def __bool__(self) -> bool:
        return bool(self.specs)

    def offered(self) -> ToolBox | None:
        """The tools to offer one answer: those available now (None when none is)."""
        specs = [spec for spec in self.specs.values() if spec.available is None or spec.available()]
        if len(specs) == len(self.specs):
            return self
        return ToolBox(specs) if specs else None

    def schemas(self) -> tuple[dict[str, Any], ...]:
        return tuple(spec.schema() for spec in self.specs.values())

    def call(self, name: str, arguments: str) -> ToolResult:
        """Run one call; whatever goes wrong becomes the text the model reads."""
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(self.specs)
            return ToolResult(
                name, arguments, f"error: there is no tool {name!r} (tools: {known})", "unknown"
            )
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return ToolResult(name, arguments, "error: the arguments are not valid JSON", "bad_arguments")
        if not isinstance(parsed, dict):
            return ToolResult(name, arguments, "error: the arguments must be a JSON object", "bad_arguments")
        sources: tuple[Source, ...] = ()
        try:
            found = spec.run(parsed)
            if not isinstance(found, Found):  # a text alone: read from no document
                found = Found(found)
            text, outcome, sources = found.text[:MAX_RESULT], "ok", found.sources
        except ToolError as exc:
            text, outcome = f"error: {exc}"[:MAX_RESULT], "error"
        except Exception as exc:  # a bug in a tool must not fail the answer: the model answers without it
            log.exception("tool %s failed on %r", name, arguments[:200])
            text, outcome = f"error: the tool failed ({type(exc).__name__})", "error"
        return ToolResult(name, arguments, text, outcome, sources)  # type: ignore[arg-type]


def tool_messages(said: str, calls: ToolCalls, results: list[ToolResult]) -> list[ChatMessage]:
    """One round in OpenAI's format: the assistant's calls, then each call's result."""
    asked = [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls.calls
    ]
    messages: list[ChatMessage] = [{"role": "assistant", "content": said or None, "tool_calls": asked}]
    for call, result in zip(calls.calls, results, strict=True):
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
    return messages


def tool_sources(results: list[ToolResult]) -> tuple[Source, ...]:
    """The documents the tools' results were read from, in the order found, each once."""
    return tuple(dict.fromkeys(source for result in results for source in result.sources))


def tool_note(results: list[ToolResult]) -> str:
    """A short note of what the tools found, kept in the history before the answer (not the calls in
    OpenAI's format: a turn stays a plain question and answer, which the history trims by characters)."""
    found = [
        f"{r.name}({r.arguments[:NOTE_ARGUMENTS]}) → {r.text[:NOTE_RESULT]}"
        for r in results
        if r.outcome == "ok"
    ]
    return texts.TOOL_NOTE.format(calls="；".join(found)) if found else ""


__all__ = [
    "MAX_CALLS",
    "MAX_ROUNDS",
    "TOOL_BUDGET_SECONDS",
    "TOOL_NAMES",
    "ToolBox",
    "ToolError",
    "ToolResult",
    "ToolSpec",
    "tool_messages",
    "tool_note",
    "tool_sources",
]
