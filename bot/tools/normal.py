"""The normal distribution tool: probabilities and quantiles (statistics.NormalDist)."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from bot.tools.base import ToolError, ToolSpec, number_text


def _number(arguments: dict[str, Any], name: str, default: float | None = None) -> float:
    value = arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ToolError(f"argument {name} must be a finite number")
    return float(value)


def _percent(value: float) -> str:
    return f"{number_text(round(value, 10))} ({value * 100:.4g}%)"


def run(arguments: dict[str, Any]) -> str:
    mean, sd = _number(arguments, "mean", 0.0), _number(arguments, "sd", 1.0)
    if sd <= 0:
        raise ToolError("sd must be greater than 0")
    dist, question = NormalDist(mean, sd), arguments.get("question")
    where = f"N(mean={number_text(mean)}, sd={number_text(sd)})"
    if question == "below":
        x = _number(arguments, "x")
        return f"{where}: P(X ≤ {number_text(x)}) = {_percent(dist.cdf(x))}"
    if question == "above":
        x = _number(arguments, "x")
        return f"{where}: P(X ≥ {number_text(x)}) = {_percent(1 - dist.cdf(x))}"
    if question == "between":
        low, high = sorted((_number(arguments, "x"), _number(arguments, "x2")))
        probability = dist.cdf(high) - dist.cdf(low)
        return f"{where}: P({number_text(low)} ≤ X ≤ {number_text(high)}) = {_percent(probability)}"
    if question == "quantile":
        p = _number(arguments, "p")
        if not 0 < p < 1:
            raise ToolError("p must be between 0 and 1 (exclusive)")
        return f"{where}: quantile at p={number_text(p)} is {number_text(dist.inv_cdf(p))}"
    raise ToolError("question must be below, above, between or quantile")


SPEC = ToolSpec(
    name="normal_distribution",
    description=(
        "正态分布的概率与分位数。question=below：P(X≤x)；above：P(X≥x)；between：P(x≤X≤x2)；"
        "quantile：累计概率为 p 的分位数。默认标准正态分布（均值 0，标准差 1）。"
    ),
    parameters={
        "type": "object",
        "properties": {
            "question": {
                "type": "string",
                "enum": ["below", "above", "between", "quantile"],
                "description": "要算的：below、above、between 的概率，或 quantile 分位数",
            },
            "mean": {"type": "number", "description": "均值 mean，默认 0"},
            "sd": {"type": "number", "description": "标准差 sd（sigma），大于 0，默认 1"},
            "x": {"type": "number", "description": "below、above、between 的值（between 的下限）"},
            "x2": {"type": "number", "description": "between 的上限"},
            "p": {"type": "number", "description": "quantile 的累计概率，0 到 1 之间"},
        },
        "required": ["question"],
    },
    run=run,
)
