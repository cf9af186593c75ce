"""The equation solver tool: linear and polynomial equations and small systems (sympy).

sympy runs in a child process with a hard time limit (TIME_LIMIT): a pathological equation is killed,
never left to hang a job worker. Children come from a forkserver that imported sympy once, so a call
costs a fork, not an interpreter start. The input is checked first: numbers, operators, one-letter
variables (x, y, x1…) and a few named functions only — sympy's parser evaluates what it parses, so
nothing else may reach it."""

from __future__ import annotations

import multiprocessing
import re
import sys
from multiprocessing.connection import Connection
from typing import Any

from bot.tools.base import MAX_RESULT, ToolError, ToolSpec

#: seconds a solve may take before its process is killed
TIME_LIMIT = 1.0
#: seconds a solve's process may take to start: the first one of a process starts the forkserver,
#: which imports sympy (a second or more on a busy machine), and that is not the equation's time
START_LIMIT = 30.0
MAX_EQUATIONS = 6
MAX_LENGTH = 200
#: the named functions and constants an equation may use (e and E are Euler's number, as in the calculator)
NAMES = frozenset({"sqrt", "exp", "log", "ln", "sin", "cos", "tan", "pi", "e", "E"})
TOKENS = re.compile(r"\s+|[A-Za-z]+\d*|\d+(?:\.\d+)?|\*\*|[-+*/^()=,]")
VARIABLE = re.compile(r"[A-Za-z]\d*")


def check(equation: str) -> list[str]:
    """The variables of an equation; ToolError if it holds anything but the allowed tokens."""
    if len(equation) > MAX_LENGTH:
        raise ToolError(f"the equation is too long (at most {MAX_LENGTH} characters)")
    variables, position = [], 0
    for match in TOKENS.finditer(equation):
        if match.start() != position:
            break
        position = match.end()
        word = match.group()
        if word[0].isalpha() and word not in NAMES:
            if not VARIABLE.fullmatch(word):
                raise ToolError(
                    f"unknown name {word!r}: variables are one letter (digits may follow, e.g. x1)"
                )
            variables.append(word)
    if position != len(equation):
        raise ToolError(f"unsupported characters in the equation: {equation[position : position + 10]!r}")
    if equation.count("=") > 1:
        raise ToolError("one = per equation")
    return variables


def _solve(equations: list[str], names: list[str]) -> str:
    """In the child: parse (already checked) and solve."""
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    symbols = {name: sympy.Symbol(name) for name in names}
    local = {**symbols, "ln": sympy.log, "e": sympy.E, "E": sympy.E, "pi": sympy.pi}

    def parse(text: str) -> Any:
        return parse_expr(text, local_dict=dict(local), transformations=transformations)

    parsed = []
    for equation in equations:
        left, _, right = equation.partition("=")
        parsed.append(sympy.Eq(parse(left), parse(right or "0")))
    unknowns = [symbols[name] for name in names]
    solutions = sympy.solve(parsed, unknowns, dict=True)
    if not solutions:
        return "no solution (or none that algebra can find)"
    lines = []
    for solution in solutions[:10]:
        parts = []
        for symbol, value in solution.items():
            exact = str(value)
            approx = "" if value.is_Integer else f" ≈ {sympy.N(value, 10)}"
            parts.append(f"{symbol} = {exact}{approx}")
        lines.append(", ".join(parts))
    more = f"\n({len(solutions)} solutions, the first 10 listed)" if len(solutions) > 10 else ""
    return "\n".join(lines) + more


def _child(connection: Connection, equations: list[str], names: list[str]) -> None:
    try:
        connection.send(("started", ""))  # sympy is imported (preloaded): the time limit starts now
        connection.send(("ok", _solve(equations, names)))
    except Exception as exc:  # the parser's and the solver's refusals alike: words for the model
        connection.send(("error", f"cannot solve: {type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        connection.close()


def solve(equations: list[str], variables: list[str] | None = None, limit: float | None = None) -> str:
    """The solutions, as text; `limit`: seconds before the solve is killed (default TIME_LIMIT)."""
    found: list[str] = []
    for equation in equations:
        found += [name for name in dict.fromkeys(check(equation)) if name not in found]
    names = variables or found
    for name in names:
        if not VARIABLE.fullmatch(name) or name in NAMES:
            raise ToolError(
                f"variable {name!r}: use one letter (digits may follow) other than e (Euler's number)"
            )
    if not names:
        raise ToolError("the equations have no unknown")
    text = _run_limited(equations, names, TIME_LIMIT if limit is None else limit)
    return text[:MAX_RESULT]


def _preloaded() -> list[str]:
    """What the forkserver imports once, so that each child starts in milliseconds: sympy, this module
    (the child's function), and the program's main module — multiprocessing runs it again in every child
    started from a `python -m NAME` program (`python -m bot.answering.worker`), whose imports are then
    all there already. Without it, a child spent seconds importing the bot before it could solve."""
    modules = ["bot.tools.solver_boot", "sympy", "sympy.parsing.sympy_parser", __name__]
    main = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    if main and main != "__main__" and not main.endswith(".__main__"):
        modules.append(main)
    return modules


def _run_limited(equations: list[str], names: list[str], limit: float) -> str:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preloaded())
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, equations, names), name="solve")
    try:
        process.start()
        sender.close()
        if not receiver.poll(START_LIMIT) or receiver.recv()[0] != "started":
            raise ToolError("the solver did not start")
        if not receiver.poll(limit):
            raise ToolError(f"timed out after {limit:g} s: simplify the equations or solve them another way")
        status, text = receiver.recv()
    except EOFError:
        raise ToolError("the solver process died") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        process.close()
        receiver.close()
    if status != "ok":
        raise ToolError(text)
    return str(text)


def run(arguments: dict[str, Any]) -> str:
    equations, variables = arguments.get("equations"), arguments.get("variables")
    if isinstance(equations, str):
        equations = [equations]
    if not isinstance(equations, list) or not equations or not all(isinstance(e, str) for e in equations):
        raise ToolError('missing argument equations (a list, e.g. ["x + y = 35", "2*x + 4*y = 94"])')
    if len(equations) > MAX_EQUATIONS:
        raise ToolError(f"at most {MAX_EQUATIONS} equations")
    if variables is not None and not (
        isinstance(variables, list) and all(isinstance(v, str) for v in variables)
    ):
        raise ToolError("variables must be a list of names")
    return solve([e.replace("（", "(").replace("）", ")") for e in equations], variables or None)


SPEC = ToolSpec(
    name="solve_equations",
    description=(
        "解方程或方程组（线性、多项式等），给出精确解和近似值。"
        "变量用单个英文字母（可带数字，如 x、y、r、x1），"
        "乘号用 *，乘方用 ** 或 ^，可用 sqrt、exp、log、ln、sin、cos、tan、pi；"
        "e 是自然常数（欧拉数 2.718…），不能作未知数。"
        '例如鸡兔同笼：equations=["x + y = 35", "2*x + 4*y = 94"]；增长率：["100*(1+r)**2 = 121"]。'
    ),
    parameters={
        "type": "object",
        "properties": {
            "equations": {
                "type": "array",
                "items": {"type": "string"},
                "description": "方程的列表 equations，每个方程含一个 =（没有 = 时视为 … = 0）",
            },
            "variables": {
                "type": "array",
                "items": {"type": "string"},
                "description": "要解的未知数 variables（可省略：方程里所有的字母）",
            },
        },
        "required": ["equations"],
    },
    run=run,
)
