"""The one Markdown dialect the bot reads in the model's answers, for chat and page alike.

CommonMark (markdown-it-py) with GitHub's tables and ~~strikethrough~~, and formulas in the four ways
models write them: `$…$` and `$$…$$` (mdit-py-plugins' dollarmath, with pandoc's rule that `$5 and $10`
is money, not math), and `\\(…\\)` and `\\[…\\]` (this module's plugin: GPT-style models prefer these).
Raw HTML in an answer is never HTML: it stays text (`html: False`). Every block token keeps its source
lines (`map`), which the streaming chat conversion needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_block import reference as reference_rule
from markdown_it.rules_inline import StateInline
from mdit_py_plugins.dollarmath import dollarmath_plugin

#: how each bracket opens and closes, and whether it is display math
BRACKETS = {"\\(": ("\\)", False), "\\[": ("\\]", True)}


def make_parser(
    *,
    linkify: bool = False,
    breaks: bool = False,
    highlight: Callable[[str, str, str], str] | None = None,
    math: Callable[[str, dict[str, Any]], str] | None = None,
) -> MarkdownIt:
    """A parser of the dialect; `highlight` and `math` render code and formulas (HTML only); `breaks`:
    a line break in a paragraph is one on the page too (models, Chinese ones above all, mean it)."""
    options: dict[str, Any] = {"html": False, "linkify": linkify, "breaks": breaks, "typographer": False}
    if highlight is not None:
        options["highlight"] = highlight
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    if linkify:
        md.enable("linkify")
    dollarmath_plugin(md, allow_space=False, allow_digits=False, double_inline=True, renderer=math)
    bracket_math_plugin(md)
    footnotes_as_text(md)
    return md


def footnotes_as_text(md: MarkdownIt) -> None:
    """A footnote (`[^1]: 参见《物理学史》第3章。`) stays text. CommonMark has no footnotes: it read the line
    as a link reference definition (Chinese text has no space to end its address), so the footnote's
    text vanished and its mark became a link to it, percent-encoded. Now the definition is a paragraph
    and the mark `[^1]` stays as written, in chat and on the page."""
    original = reference_rule

    def reference(state: StateBlock, start: int, end: int, silent: bool) -> bool:
        if state.src.startswith("[^", state.bMarks[start] + state.tShift[start]):
            return False
        return original(state, start, end, silent)

    md.block.ruler.at("reference", reference)


def bracket_math_plugin(md: MarkdownIt) -> None:
    """`\\(…\\)` and `\\[…\\]` as math: tokens of dollarmath's types (math_inline, math_inline_double,
    math_block), so that one renderer serves both notations."""
    md.inline.ruler.before("escape", "math_bracket", _inline_bracket)
    md.block.ruler.before(
        "fence",
        "math_block_bracket",
        _block_bracket,
        {"alt": ["paragraph", "reference", "blockquote", "list"]},
    )


def _inline_bracket(state: StateInline, silent: bool) -> bool:
    opening = state.src[state.pos : state.pos + 2]
    if opening not in BRACKETS:
        return False
    closing, display = BRACKETS[opening]
    end = state.src.find(closing, state.pos + 2)
    if end < 0 or not state.src[state.pos + 2 : end].strip():
        return False
    if not silent:
        token = state.push("math_inline_double" if display else "math_inline", "math", 0)
        token.content = state.src[state.pos + 2 : end].strip()
        token.markup = opening
    state.pos = end + 2
    return True


def _line(state: StateBlock, line: int) -> str:
    return state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]


def _closes_inside(text: str) -> bool:
    """`\\]` with more text after it on the same line (inline math, not a block)."""
    at = text.find("\\]")
    return at >= 0 and bool(text[at + 2 :].strip())


def _block_bracket(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """A `\\[` that starts a line, its formula, and the line that ends with `\\]` (no blank line
    between: LaTeX allows none in display math)."""
    if state.sCount[start] - state.blkIndent >= 4:  # an indented code block
        return False
    first = _line(state, start)
    if not first.startswith("\\[") or _closes_inside(first[2:]):
        return False
    body, line = first[2:], start
    while not body.rstrip().endswith("\\]"):
        line += 1
        if line >= end or state.isEmpty(line) or _closes_inside(_line(state, line)):
            return False  # not closed (yet), or text follows it: a paragraph
        body += "\n" + _line(state, line)
    if silent:
        return True
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = body.rstrip()[:-2].strip()
    token.markup = "\\["
    token.map = [start, line + 1]
    state.line = line + 1
    return True
