"""The built-in tools on their own: the calculator's safe evaluator and its limits, the equation solver
and its hard time limit, the normal distribution, dates, and the registry that runs a model's call."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bot.tools import TOOL_NAMES, ToolBox, ToolError, calculator, dates, equations, normal
from bot.tools.base import number_text

ZONE = ZoneInfo("Asia/Shanghai")


def calc(expression: str) -> str:
    return calculator.calculate(expression).split(" = ", 1)[1]


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1+2*3", "7"),
        ("0.1+0.2", "0.3"),
        ("10000*(1+5%)**3", "11576.25"),
        ("20% * 350", "70"),
        ("10 % 3", "1"),
        ("2^10", "1024"),
        ("sqrt(2)", "1.41421356237"),
        ("root(27, 3)", "3"),
        ("cbrt(-8)", "-2"),
        ("log(1000, 10)", "3"),
        ("ln(e)", "1"),
        ("lg(100)", "2"),
        ("（3+4）×2÷7", "2"),
        ("factorial(10)", "3628800"),
        ("2**64", "18446744073709551616"),
        ("round(1234.5678, 2)", "1234.57"),
        ("round(12345, -2)", "12300"),
        ("round(2.5)", "2"),
        ("10000*(1+5%/365)**(365*30)", "44812.2868852"),  # daily compounding for 30 years
        ("2**-10", "0.0009765625"),
    ],
)
def test_the_calculator_computes(expression: str, value: str) -> None:
    assert calc(expression) == value


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2^10+1", "1025"),
        ("2^3*2", "16"),
        ("-2^2", "-4"),
        ("2^3^2", "512"),
        ("2^-1", "0.5"),
        ("3＾2", "9"),
    ],
)
def test_caret_is_a_power_with_the_precedence_of_maths(expression: str, value: str) -> None:
    """2^10+1 is (2^10)+1, not 2^(10+1) as Python's xor precedence would make it."""
    assert calc(expression) == value
    assert calc(expression.replace("^", "**").replace("＾", "**")) == value


def test_a_float_base_may_have_a_large_exponent_when_the_result_is_small() -> None:
    """Only the result's size is bounded: (1+1/n)**n is about e (2.718268237174… for n = 100000; a float
    base carries its rounding, so the last digits shown are not all exact)."""
    assert float(calc("(1+1/100000)**100000")) == pytest.approx(2.718268237174, rel=1e-10)
    assert float(calc("0.5**1000")) == pytest.approx(2**-1000)
    assert calc("exp(2)") == "7.38905609893"


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("10**308", "1.000000000000e+308"),
        ("10**320 + 1", "1.000000000000e+320"),
        ("-(10**399*9 + 10**399)", "-1.000000000000e+400"),
        ("3**800", "4.977414122938e+381"),
    ],
)
def test_integers_of_309_to_400_digits_are_shown_not_crashed(expression: str, value: str) -> None:
    assert calc(expression) == value


def test_a_large_integer_is_rounded_as_a_decimal_not_through_a_float() -> None:
    assert number_text(int("9" * 400)) == "1.000000000000e+400"
    assert number_text(12345678901234567890123456789012345) == "1.234567890123e+34"


@pytest.mark.parametrize(
    ("expression", "refusal"),
    [
        ("9**9**9**9", "refused"),
        ("9**999999", "refused"),
        ("10**399 * 10**399", "refused"),
        ("2**2**2**2**2**2", "refused"),
        ("1 << 100000000", "cannot compute"),
        ("__import__('os').system('id')", "cannot compute"),
        ("(1).__class__.__bases__", "cannot compute"),
        ("open('/etc/passwd')", "cannot compute"),
        ("[x for x in range(10**9)]", "cannot compute"),
        ("'a' * 10**9", "cannot compute"),
        ("factorial(100000)", "factorial"),
        ("1/0", "division by zero"),
        ("1e308 * 10", "floating-point"),
        ("sqrt(-1)", "even root"),
        ("1+" * 200 + "1", "too long"),
        ("round(1, -10**9)", "round takes"),  # 10**(10**9) in C: it hung a worker
        ("round(12345, -10**5)", "round takes"),
        ("round(1, 401)", "round takes"),
        ("round(1, 0.5)", "round takes"),
        ("'%0900000000d' % 1", "no text"),  # a string of 900 MB
        ("f'{1:0900000000}'", "no text"),
        ("2**-100000", "too small"),
        ("1.0001**10**7", "refused"),
        ("1.0000001**1e300", "refused"),
        ("exp(1000)", "refused"),
    ],
)
def test_hostile_or_impossible_expressions_are_refused_not_computed(expression: str, refusal: str) -> None:
    with pytest.raises(ToolError, match=refusal):
        calculator.calculate(expression)


def test_the_solver_solves_systems_and_growth_rates() -> None:
    assert equations.solve(["x + y = 35", "2*x + 4*y = 94"]) == "x = 23, y = 12"  # 鸡兔同笼
    rate = equations.solve(["100*(1+r)^2 = 121"])
    assert "r = 1/10 ≈ 0.1" in rate and "r = -21/10" in rate
    roots = "x = -sqrt(2) ≈ -1.414213562\nx = sqrt(2) ≈ 1.414213562"
    assert equations.solve(["x^2 - 2"]) == roots
    assert equations.solve(["x + 1 = x"]).startswith("no solution")


def test_a_pathological_equation_is_killed_at_the_time_limit() -> None:
    system = ["x**5 + y**5 + z**5 = 3", "x*y*z + x**3 = 1", "x**4*y + z**3 = 2"]
    with pytest.raises(ToolError, match=r"timed out after 0\.2 s"):
        equations.solve(system, limit=0.2)
    assert equations.solve(["2*x = 4"]) == "x = 2"  # the next call is served as usual


def test_e_in_an_equation_is_eulers_number_as_in_the_calculator() -> None:
    """(A generous time limit: what is tested is the answer, not the solver's speed on a busy machine.)"""
    solved = equations.solve(["e^x = 10"])
    assert solved == "x = log(10) ≈ 2.302585093"  # not e = 10**(1/x)
    assert equations.solve(["2*e*x = 1"]) == "x = exp(-1)/2 ≈ 0.1839397206"
    with pytest.raises(ToolError, match="other than e"):
        equations.solve(["e + x = 1"], ["e"])
    assert "e 是自然常数" in equations.SPEC.description


@pytest.mark.parametrize(
    "equation",
    [
        "__import__('os').system('id') = 0",
        "x.__class__ = 1",
        "lambda = 1",
        "exec(x) = 1",
        "x; y = 1",
        "x == 1",
        "x = 1 = 2",
        "变量 = 1",
    ],
)
def test_the_solver_refuses_anything_but_a_formula(equation: str) -> None:
    with pytest.raises(ToolError):
        equations.solve([equation])


def test_normal_distribution() -> None:
    between = normal.run({"question": "between", "mean": 100, "sd": 15, "x": 85, "x2": 115})
    assert between.endswith("P(85 ≤ X ≤ 115) = 0.6826894921 (68.27%)")
    assert normal.run({"question": "quantile", "p": 0.975}).endswith("is 1.95996398454")
    assert normal.run({"question": "above", "x": 0}).endswith("= 0.5 (50%)")
    for bad in (
        {"question": "below"},
        {"question": "below", "x": 1, "sd": 0},
        {"question": "quantile", "p": 1},
    ):
        with pytest.raises(ToolError):
            normal.run(bad)


def test_dates_in_the_time_zone() -> None:
    run = dates.make_run(
        ZONE, clock=lambda: 1_796_140_800.0
    )  # 2026-12-01 16:00 UTC = 12-02 00:00 in Shanghai
    assert run({"question": "today"}) == "today is 2026-12-02 (Wednesday), the time is 00:00 (Asia/Shanghai)"
    assert run({"question": "between", "date": "2026-01-01", "date2": "2026-12-01"}).endswith(": 334 days")
    assert run({"question": "weekday", "date": "2024-02-29"}) == "2024-02-29 (Thursday)"
    assert run({"question": "add", "date": "2026-12-01", "days": -365}).endswith("is 2025-12-01 (Monday)")
    with pytest.raises(ToolError, match="out of range"):
        run({"question": "add", "date": "9999-12-01", "days": 100})
    with pytest.raises(ToolError, match="YYYY-MM-DD"):
        run({"question": "weekday", "date": "明天"})


def test_the_registry_turns_every_failure_into_text_for_the_model() -> None:
    box = ToolBox.enabled(list(TOOL_NAMES), ZONE)  # without a knowledge base: no search_knowledge
    assert [schema["function"]["name"] for schema in box.schemas()] == list(TOOL_NAMES[:-1])
    for schema in box.schemas():
        assert schema["type"] == "function" and schema["function"]["parameters"]["type"] == "object"
        json.dumps(schema)
    assert box.call("calculator", '{"expression": "6*7"}').outcome == "ok"
    assert box.call("calculator", "{not json").outcome == "bad_arguments"
    assert box.call("calculator", "[1, 2]").outcome == "bad_arguments"
    assert box.call("calculator", "{}").outcome == "error"
    assert box.call("shell", '{"cmd": "rm -rf /"}').outcome == "unknown"
    long = box.call("calculator", json.dumps({"expression": "1+" * 1000 + "1"}))
    assert long.outcome == "error" and len(long.text) <= 1000
    assert not ToolBox.enabled([], ZONE)


def test_the_solvers_forkserver_preloads_the_programs_main_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """multiprocessing runs a `python -m NAME` program's main module again in every child: preloaded,
    its imports cost the forkserver once instead of each solve (seconds under `-m bench.tools_bench`)."""
    program = SimpleNamespace(__spec__=SimpleNamespace(name="bot.answering.worker"))
    monkeypatch.setitem(sys.modules, "__main__", program)
    assert equations._preloaded() == [
        "bot.tools.solver_boot",
        "sympy",
        "sympy.parsing.sympy_parser",
        "bot.tools.equations",
        "bot.answering.worker",
    ]
    for name in ("pytest.__main__", None):
        program.__spec__ = SimpleNamespace(name=name) if name else None
        assert equations._preloaded()[-1] == "bot.tools.equations"
