"""The dates tool: today in TIMEZONE, days between two dates, a date's weekday, a date plus days."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from bot.tools.base import ToolError, ToolSpec

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: days a date may be moved by (about 27,000 years: well inside datetime's range)
MAX_DAYS = 10_000_000


def _date(arguments: dict[str, Any], name: str) -> dt.date:
    value = arguments.get(name)
    if not isinstance(value, str):
        raise ToolError(f"missing argument {name} (a date, YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ToolError(f"{name}={value[:40]!r} is not a date in YYYY-MM-DD format") from None


def _named(day: dt.date) -> str:
    return f"{day.isoformat()} ({WEEKDAYS[day.weekday()]})"


def make_run(zone: ZoneInfo, clock: Callable[[], float] = time.time) -> Callable[[dict[str, Any]], str]:
    def run(arguments: dict[str, Any]) -> str:
        question = arguments.get("question")
        if question == "today":
            now = dt.datetime.fromtimestamp(clock(), zone)
            return f"today is {_named(now.date())}, the time is {now:%H:%M} ({zone.key})"
        if question == "between":
            start, end = _date(arguments, "date"), _date(arguments, "date2")
            return f"from {_named(start)} to {_named(end)}: {(end - start).days} days"
        if question == "weekday":
            return _named(_date(arguments, "date"))
        if question == "add":
            start, days = _date(arguments, "date"), arguments.get("days")
            if isinstance(days, bool) or not isinstance(days, int) or abs(days) > MAX_DAYS:
                raise ToolError(f"days must be an integer of at most {MAX_DAYS} in absolute value")
            try:
                return f"{_named(start)} plus {days} days is {_named(start + dt.timedelta(days=days))}"
            except OverflowError:
                raise ToolError("the date is out of range (years 1 to 9999)") from None
        raise ToolError("question must be today, between, weekday or add")

    return run


def spec(zone: ZoneInfo, clock: Callable[[], float] = time.time) -> ToolSpec:
    return ToolSpec(
        name="dates",
        description=(
            "日期工具。question=today：今天的日期、星期和时间；between：date 到 date2 相差几天；"
            "weekday：date 是星期几；add：date 加上 days 天（可为负）是哪天。日期格式 YYYY-MM-DD。"
        ),
        parameters={
            "type": "object",
            "properties": {
                "question": {
                    "type": "string",
                    "enum": ["today", "between", "weekday", "add"],
                    "description": "要做的：today、between、weekday 或 add",
                },
                "date": {"type": "string", "description": "日期，YYYY-MM-DD"},
                "date2": {"type": "string", "description": "between 的第二个日期，YYYY-MM-DD"},
                "days": {"type": "integer", "description": "add 要加的天数（可为负）"},
            },
            "required": ["question"],
        },
        run=make_run(zone, clock),
    )
