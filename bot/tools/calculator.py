"""The calculator tool: arithmetic on a safe evaluator (simpleeval), with limits on number size.

No names but the few functions below, no attributes, no comprehensions; a power whose result would
have more than MAX_DIGITS digits is refused before it is computed (`9**9**9**9`), as are round() to more
than MAX_DIGITS digits (`round(1, -10**9)` computes 10**(10**9)), text (`'%0900000000d' % 1`) and an
expression longer than MAX_EXPRESSION characters, so that every evaluation ends in milliseconds."""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

from simpleeval import SimpleEval

from bot.tools.base import ToolError, ToolSpec, number_text

#: characters of an expression (the model's, not the user's: a formula, not a program)
MAX_EXPRESSION = 300
#: digits a result (or any intermediate integer) may have
MAX_DIGITS = 400
#: a percentage: a number followed by % that is not a modulo (nothing after it to take the modulo of)
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%(?!\s*[\d.(a-zA-Z])")


def _digits(value: Any) -> float:
    """Decimal digits of a number's integer part (0 for small ones)."""
    magnitude = abs(value)
    return math.log10(magnitude) if isinstance(magnitude, (int, float)) and magnitude > 1 else 0.0


def _checked(value: Any) -> Any:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is out of the floating-point range")
    if isinstance(value, int) and _digits(value) > MAX_DIGITS:
        raise ToolError(f"refused: a number of more than {MAX_DIGITS} digits")
    return value


def _power(base: Any, exponent: Any) -> Any:
    """`**` that refuses a result too large before computing it: an exact integer (an integer to a
    positive integer power) by its digits, any other power (a float, in constant time) by the size of
    its result, exponent × log10(|base|), so that (1+1/100000)**100000 is computed."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        too_large = _digits(base) * exponent > MAX_DIGITS
    else:
        too_large = base != 0 and exponent * math.log10(abs(base)) > MAX_DIGITS
    if too_large:
        raise ToolError(f"refused: the power would have more than {MAX_DIGITS} digits")
    value = operator.pow(base, exponent)
    if value == 0 and base != 0:  # 2**-100000 is not 0: below the floating-point range
        raise ToolError("the result is too small for floating point (under about 1e-308)")
    return _checked(value)


def _mul(left: Any, right: Any) -> Any:
    if _digits(left) + _digits(right) > MAX_DIGITS:
        raise ToolError(f"refused: a number of more than {MAX_DIGITS} digits")
    return operator.mul(left, right)


def _root(value: float, degree: float = 2) -> float:
    """The real `degree`-th root (a negative number's odd root too)."""
    if value < 0 and degree % 2 == 1:
        return -((-value) ** (1 / degree))
    if value < 0:
        raise ToolError("no even root of a negative number")
    return float(value ** (1 / degree))


def _log(value: float, base: float = math.e) -> float:
    return math.log(value, base)


def _round(value: float, ndigits: int | None = None) -> float:
    """`round`, whose digits are bounded: an integer rounded to -N digits computes 10**N."""
    if ndigits is None:
        return round(value)
    if isinstance(ndigits, bool) or not isinstance(ndigits, int) or abs(ndigits) > MAX_DIGITS:
        raise ToolError(f"round takes a number of digits, an integer from -{MAX_DIGITS} to {MAX_DIGITS}")
    return round(value, ndigits)


def _factorial(value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= 170:
        raise ToolError("factorial takes an integer from 0 to 170")
    return math.factorial(value)


FUNCTIONS = {
    "sqrt": _root,
    "root": _root,
    "cbrt": lambda value: _root(value, 3),
    "log": _log,
    "ln": math.log,
    "lg": math.log10,
    "log10": math.log10,
    "log2": math.log2,
    "exp": lambda value: _power(math.e, value),
    "abs": abs,
    "round": _round,
    "floor": math.floor,
    "ceil": math.ceil,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "radians": math.radians,
    "degrees": math.degrees,
    "factorial": _factorial,
    "min": min,
    "max": max,
}
NAMES = {"pi": math.pi, "e": math.e, "π": math.pi}


def _no_text(node: ast.AST) -> Any:
    """Text has no place in a formula, and builds strings of any size: `'%0900000000d' % 1` is 900 MB."""
    raise ToolError("cannot compute: an expression has numbers only, no text")


def _number(node: ast.Constant) -> Any:
    return _no_text(node) if isinstance(node.value, (str, bytes)) else node.value


def _evaluator() -> SimpleEval:
    evaluator = SimpleEval(functions=dict(FUNCTIONS), names=dict(NAMES))
    evaluator.operators = {**evaluator.operators, ast.Pow: _power, ast.Mult: _mul}
    for unsafe in (ast.LShift, ast.RShift):  # 1 << 10**9 would build a huge integer
        evaluator.operators.pop(unsafe, None)
    evaluator.nodes[ast.Constant] = _number
    evaluator.nodes[ast.JoinedStr] = _no_text  # f'{1:0900000000}'
    return evaluator


def normalize(expression: str) -> str:
    """The notations people and models write (×, ÷, full-width brackets, 20%, 2^10) in Python's. `^` is
    a power as in maths, written `**` before parsing: Python's `^` (xor) binds more loosely than +, *
    and a unary minus, `**` more tightly, so that 2^10+1 is 1025 and -2^2 is -4."""
    table = str.maketrans(
        {"×": "*", "÷": "/", "（": "(", "）": ")", "，": ",", "−": "-", "√": "sqrt", "＾": "^"}
    )
    text = expression.translate(table).replace("％", "%").replace("^", "**")
    return PERCENT.sub(r"(\1/100)", text)


def calculate(expression: str) -> str:
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"the expression is too long (at most {MAX_EXPRESSION} characters)")
    try:
        value = _checked(_evaluator().eval(normalize(expression)))
    except ToolError:
        raise
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, MemoryError):
        raise ToolError("refused: the number is too large") from None
    except Exception as exc:  # simpleeval's refusals (names, attributes…) and math domain errors alike
        raise ToolError(f"cannot compute: {type(exc).__name__}: {str(exc)[:120]}") from None
    if not isinstance(value, (int, float)):
        raise ToolError("the result is not a number")
    return f"{expression} = {number_text(value)}"


def run(arguments: dict[str, Any]) -> str:
    expression = arguments.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("missing argument expression (a formula)")
    return calculate(expression.strip())


SPEC = ToolSpec(
    name="calculator",
    description=(
        "精确计算一个数学算式并返回结果。支持 + - * / **（乘方，也可写 ^）、百分数（如 20%）、括号，"
        "函数 sqrt、root(x, n)、cbrt、log(x, 底数)、ln、lg、exp、abs、round、floor、ceil、"
        "sin、cos、tan（弧度）、factorial，常数 pi、e。需要算数时请调用它，不要心算。"
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "要计算的算式，例如 10000*(1+5%)**3 或 sqrt(2)*log(100, 10)",
            }
        },
        "required": ["expression"],
    },
    run=run,
)
