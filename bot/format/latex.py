"""Formulas (LaTeX) for the two places an answer is read: MathML for the answer page (rendered by the
browser, no script needed), and a plain-text approximation for the chat (`x² + √(y)`, `a/b`, `α ≤ β`)
that reads better than the source. Neither ever fails: what cannot be converted stays as written."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import latex2mathml.converter

log = logging.getLogger(__name__)

SYMBOLS = {
    # Greek
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ",
    "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ",
    "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ",
    "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    # operators and relations
    "times": "×", "cdot": "·", "div": "÷", "pm": "±", "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥",
    "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "equiv": "≡", "sim": "∼", "propto": "∝",
    "infty": "∞", "sum": "∑", "prod": "∏", "int": "∫", "oint": "∮", "partial": "∂", "nabla": "∇",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒", "Leftarrow": "⇐",
    "leftrightarrow": "↔", "Leftrightarrow": "⇔", "mapsto": "↦", "in": "∈", "notin": "∉", "ni": "∋",
    "subset": "⊂", "subseteq": "⊆", "supset": "⊃", "supseteq": "⊇", "cup": "∪", "cap": "∩",
    "emptyset": "∅", "varnothing": "∅", "forall": "∀", "exists": "∃", "neg": "¬", "land": "∧",
    "lor": "∨", "wedge": "∧", "vee": "∨", "oplus": "⊕", "otimes": "⊗", "circ": "∘", "angle": "∠",
    "perp": "⊥", "parallel": "∥", "degree": "°", "ldots": "…", "cdots": "⋯", "dots": "…", "vdots": "⋮",
    "ll": "≪", "gg": "≫", "lim": "lim", "log": "log", "ln": "ln", "sin": "sin", "cos": "cos",
    "tan": "tan", "exp": "exp", "max": "max", "min": "min", "det": "det", "mid": "|", "lvert": "|",
    "rvert": "|", "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈",
    "rceil": "⌉", "prime": "′", "hbar": "ħ", "ell": "ℓ", "Re": "ℜ", "Im": "ℑ", "aleph": "ℵ",
    "%": "%", "$": "$", "{": "{", "}": "}", "_": "_", "&": "&", "#": "#",
    # spacing
    "\\": " ", ",": " ", ";": " ", ":": " ", "!": "", "quad": " ", "qquad": "  ", " ": " ",
}  # fmt: skip
#: commands whose braced argument is shown as it is
TEXT_COMMANDS = {"text", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathcal", "mathbb",
                 "operatorname", "textbf", "textit", "boldsymbol", "mbox", "vec", "hat", "bar",
                 "overline", "underline", "tilde", "dot", "widehat", "overrightarrow"}  # fmt: skip
#: commands that only size or space things: dropped
DROPPED = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
           "displaystyle", "textstyle", "limits", "nolimits", "middle"}  # fmt: skip
SUPERSCRIPTS = str.maketrans("0123456789+-=()ni", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ")
SUBSCRIPTS = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


@lru_cache(maxsize=1024)  # a page polled while written renders the same formulas again and again
def to_mathml(source: str, *, display: bool) -> str | None:
    """MathML for the page, or None when the formula cannot be converted (the page shows its source).
    The result is not trusted: the page sanitizes it with everything else."""
    try:
        return str(latex2mathml.converter.convert(source, display="block" if display else "inline"))
    except Exception as exc:  # the converter raises many kinds of errors on malformed input
        log.debug("formula not converted (%s): %.80r", exc, source)
        return None


def to_text(source: str) -> str:
    """A plain-text reading of a formula, for chat."""
    try:
        return " ".join(_Reader(source).read_all().split()) or source.strip()
    except RecursionError:
        return source.strip()


class _Reader:
    """A small reader of TeX math: groups, commands, ^ and _; anything else passes through."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0

    def read_all(self) -> str:
        parts = []
        while self.pos < len(self.src):
            parts.append(self.item())
        return "".join(parts)

    def item(self) -> str:
        char = self.src[self.pos]
        if char == "{":
            return self.group()
        if char == "\\":
            return self.command()
        if char in "^_":
            self.pos += 1
            return self.script(char)
        self.pos += 1
        return "" if char == "}" else char

    def group(self) -> str:
        """{…} → its reading (the braces dropped)."""
        self.pos += 1
        parts = []
        while self.pos < len(self.src) and self.src[self.pos] != "}":
            parts.append(self.item())
        self.pos += 1
        return "".join(parts)

    def argument(self) -> str:
        while self.pos < len(self.src) and self.src[self.pos] == " ":
            self.pos += 1
        if self.pos >= len(self.src):
            return ""
        return self.item()

    def command(self) -> str:
        found = _COMMAND.match(self.src, self.pos)
        if found is None:  # a lone backslash at the end
            self.pos += 1
            return ""
        name = found.group(1)
        self.pos = found.end()
        if name == "frac" or name in ("dfrac", "tfrac"):
            top, bottom = self.argument(), self.argument()
            return f"{_wrap(top)}/{_wrap(bottom)}"
        if name == "sqrt":
            root = self.argument().strip()
            return "√" + (root if len(root) == 1 or root.isdigit() else f"({root})")
        if name in TEXT_COMMANDS:
            return self.argument()
        if name in DROPPED:
            return ""
        if name in SYMBOLS:
            return SYMBOLS[name]
        if self.src.startswith("{", self.pos):  # an unknown command keeps its argument's braces
            return f"\\{name}{{{self.argument()}}}"
        return "\\" + name

    def script(self, mark: str) -> str:
        body = self.argument()
        table = SUPERSCRIPTS if mark == "^" else SUBSCRIPTS
        if body == "∘" and mark == "^":
            return "°"
        if body and all(char.translate(table) != char for char in body):
            return body.translate(table)
        return f"{mark}{_wrap(body)}"


def _wrap(text: str) -> str:
    """`(a+b)` for a compound term, `a` alone for a single symbol, word or number."""
    text = text.strip()
    simple = len(text) == 1 or text.replace(".", "").isalnum()
    return text if simple else f"({text})"
