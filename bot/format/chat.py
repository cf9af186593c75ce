"""The model's Markdown as text that reads well in WeChat's chat, which shows text replies as they are.

Headings become a line of their own (【…】 for the top three levels), bold, italics and strikethrough
lose their marks, lists keep their bullets and numbers (nested ones indented), code blocks keep every
line and space between a line naming the language and a closing line, tables become "key：value"
lines (two columns) or one small block per row (more), links become their text and then their
address, formulas a plain-text reading (`x² + √(y)`). The parse is markdown-it-py's (bot/format/markdown.py).

**Streaming.** The answer arrives in pieces and its pages go out while the model still writes; a page
never changes once it is out. So `ChatStream` converts only what can no longer change: it parses the
complete lines received so far and emits every block but the last, which may still grow (a paragraph
that continues, a list that gets more items, a table more rows, an open code fence). Of that last block
it emits the lines that are final already: the items of a list but its last, the rows of a table but its
last, the lines of a code block, and — once a paragraph is long (HOLD_CHARS) — its lines but the last.
The lines of a long paragraph that went out are replaced in the source by one placeholder line
(OUT_LINE), so that no line read later can make them read differently, while the lines after them still
continue a paragraph; an underline under such a paragraph reads as a rule, not as its heading's. A line
that opens a formula or a link's bracket that no later line has closed yet is not final, nor is any line
after it. The text emitted is the same as converting the whole answer at once (tested), except where a
line written later changes how earlier lines of a long paragraph read (inline marks spanning them, an
underline making the paragraph a heading): those lines keep the reading they went out with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot import texts
from bot.format import latex
from bot.format.markdown import make_parser

#: a paragraph still being written is held back whole up to this many characters, then line by line
#: (and, for one long line, up to a sentence break every CUT_EVERY characters)
HOLD_CHARS = 160
CUT_EVERY = 60
#: characters at the end of a long line never cut early (they may open a mark)
CUT_MARGIN = 8
#: what ends a sentence or a clause, where a long paragraph may be cut while it is written
BREAKS = frozenset("。！？!?；;，,、：")
#: bullets of nested unordered lists, by depth
BULLETS = ("• ", "◦ ", "▪ ")
#: node types that make an answer worth its page (the page renders them; chat only approximates)
RICH = frozenset({"fence", "code_block", "table", "math_block", "math_block_label", "math_inline",
                  "math_inline_double"})  # fmt: skip
#: blocks that are over as soon as their line is (an ATX heading, a setext heading's underline, a rule)
ALWAYS_SEALED = frozenset({"heading", "hr"})
#: blocks a blank line ends (a fence only once closed: an open one runs to the end of the text so far)
SEALED_BY_BLANK = frozenset({"paragraph", "table", "blockquote", "fence", "math_block", "math_block_label"})
#: stands in the source for the lines of a paragraph that are out (a character no model writes)
OUT_LINE = "\ue000"
#: a setext heading's underline
_UNDERLINE = re.compile(r" {0,3}(-+|=+)[ \t]*")
#: a line that begins another block, which ends a paragraph
_INTERRUPTS = re.compile(r" {0,3}(```|~~~|[-+*][ \t]|\d{1,9}[.)][ \t]|>|#{1,6}([ \t]|$)|\$\$|\\\[)")
#: after a link's address: a space, unless the address ends the line or blank space follows
_URL_END = "\x00"


@cache
def parser() -> MarkdownIt:
    """The dialect without link reference definitions: models write them after the text that uses them
    (`见[1]` … `[1]: https://…`), where a stream has sent that text already; read as definitions, their
    addresses vanished. They stay lines of text, and `[1]` stays as written."""
    return make_parser().disable("reference")


@dataclass(frozen=True)
class Block:
    """A block's chat lines; `final`: how many of them can no longer change while it is the last
    block of a text still being written."""

    lines: list[str]
    final: int


def to_chat(markdown: str) -> str:
    """The whole of a finished answer, as chat text."""
    stream = ChatStream()
    return stream.feed(markdown) + stream.finish()


def is_rich(markdown: str) -> bool:
    """True when the text has code, a table or a formula (the answer page shows those properly)."""
    return any(node.type in RICH for node in _walk(SyntaxTreeNode(parser().parse(markdown))))


class ChatStream:
    """Markdown in, as it is generated; chat text out, as soon as it is final (see the module's doc)."""

    def __init__(self) -> None:
        self.pending = ""  # the source from the first line of the open (last) block on
        self.open_done = 0  # characters of the open block's chat text already emitted
        self.started = False  # some text is out: the next block begins with a blank line
        self.rich = False
        self.env: dict[str, Any] = {}  # what a parse keeps for the next (markdown-it's environment)
        self.cut_tried = 0  # len(pending) when a long paragraph was last looked at
        self.paragraph_out = False  # the open block is a paragraph, some of it out

    def feed(self, text: str) -> str:
        """Add generated text; return the chat text that became final (often "")."""
        # NUL would become U+FFFD (CommonMark) and means nothing; a lone CR would be a line break to the
        # parser but not to the line arithmetic here
        text = text.replace("\x00", "").replace("\r", "")
        self.pending += text
        out = ""
        if self.paragraph_out and "\n" in text:
            self.pending = _no_underline(self.pending)
        if "\n" in text:
            out = self._emit(self.pending[: self.pending.rfind("\n") + 1], final=False)
        if len(self.pending) > HOLD_CHARS and len(self.pending) - self.cut_tried >= CUT_EVERY:
            out += self._cut_long_paragraph()
        return out

    def finish(self) -> str:
        """The answer is complete: the rest of the chat text."""
        if self.paragraph_out:
            self.pending = _no_underline(self.pending, complete=True)
        return self._emit(self.pending, final=True)

    def _emit(self, source: str, *, final: bool) -> str:
        root = SyntaxTreeNode(parser().parse(source, self.env))
        nodes = list(root.children)
        self.rich = self.rich or any(node.type in RICH for node in _walk(root))
        out: list[str] = []
        complete_lines = source.count("\n")
        for index, node in enumerate(nodes):
            block = render_block(node)
            text = "\n".join(block.lines)
            is_open = index == len(nodes) - 1 and not final and not _sealed(node, complete_lines)
            start = self.open_done if index == 0 else 0
            upto = len("\n".join(block.lines[: block.final])) if is_open and block.final else 0
            out.append(self._out(text, start, upto if is_open else len(text)))
            if is_open and self._drop_lines_out(source, node, block, max(start, upto)):
                continue
            if is_open:
                self._keep_from(source, node, done=max(start, upto))
        if final or not nodes or _sealed(nodes[-1], complete_lines):
            self.pending = self.pending[len(source) :]
            self.open_done, self.paragraph_out = 0, False
        return "".join(out)

    def _out(self, text: str, start: int, upto: int) -> str:
        """Characters start:upto of a block's chat text (after a blank line, if it is the block's start)."""
        if upto <= start:
            return ""
        piece = text[start:upto]
        if start == 0 and self.started:
            piece = "\n\n" + piece
        self.started = True
        return piece

    def _drop_lines_out(self, source: str, node: SyntaxTreeNode, block: Block, done: int) -> bool:
        """The open block is a top-level paragraph whose first lines are out: in the source, those lines
        become one line of OUT_LINE (out already), so that nothing written later changes how they read,
        while the lines after them still continue a paragraph. False when that is not the case (the
        block is kept whole)."""
        raw = _paragraph_lines(node)
        if node.type != "paragraph" or not block.final or raw is None or node.map is None:
            return False
        out_lines = "\n".join(block.lines[: block.final])
        if done < len(out_lines):
            return False
        first_kept = node.map[0] + block.final
        kept = self.pending[sum(len(line) + 1 for line in source.split("\n")[:first_kept]) :]
        self.pending = OUT_LINE + "\n" + kept
        self.open_done = len(OUT_LINE) + done - len(out_lines)
        self.paragraph_out = True
        return True

    def _keep_from(self, source: str, node: SyntaxTreeNode, *, done: int) -> None:
        """Drop the source before the open block (its blocks are out), keep the rest."""
        first_line = node.map[0] if node.map else 0
        offset = sum(len(line) + 1 for line in source.split("\n")[:first_line])
        same_block = offset == 0
        self.pending = self.pending[offset:]
        self.open_done = max(done, self.open_done) if same_block else done
        self.paragraph_out = node.type == "paragraph" and self.open_done > 0

    def _cut_long_paragraph(self) -> str:
        """A paragraph longer than HOLD_CHARS still being written (a model may write hundreds of
        characters without a line break): its text up to a recent sentence break (or, without one, up
        to a few characters from its end) goes out, when no mark (bold, code, a link…) is open there."""
        self.cut_tried = len(self.pending)
        source = self.pending
        if len(source) - source.rfind("\n") - 1 <= HOLD_CHARS:
            return ""  # its last line is short: the lines before it go out as they are final
        nodes = list(SyntaxTreeNode(parser().parse(source, dict(self.env))).children)
        if len(nodes) != 1 or nodes[0].type != "paragraph":
            return ""
        whole = "\n".join(render_block(nodes[0]).lines)
        for cut in _cut_points(source):
            if not _marks_closed(source[:cut]):
                continue
            head = list(SyntaxTreeNode(parser().parse(source[:cut], dict(self.env))).children)
            if len(head) != 1 or head[0].type != "paragraph":
                return ""
            text = "\n".join(render_block(head[0]).lines)
            if not whole.startswith(text) or len(text) <= self.open_done:
                return ""
            piece = self._out(whole, self.open_done, len(text))
            self.open_done, self.paragraph_out = len(text), True
            return piece
        return ""


def _cut_points(source: str) -> Iterator[int]:
    """Where the text written so far may be cut, latest first: after a sentence break when one is near
    the end, else anywhere (chat text is paged later, at its own breaks); only in the last line (the
    lines before it go out when they are final, and a short last line may yet begin a table or underline
    a heading); never in the last few characters, which may be the start of a mark."""
    last = len(source) - CUT_MARGIN
    earliest = max(last - CUT_EVERY * 2, source.rfind("\n") + 1, 1)
    breaks = [at for at in range(last, earliest, -1) if source[at - 1] in BREAKS]
    yield from breaks
    yield from range(last, earliest, -1)


def _marks_closed(text: str) -> bool:
    """No inline mark left open in `text` (as far as counting can tell): cutting there shows no `**`."""
    if any(text.count(mark) % 2 for mark in ("**", "__", "~~", "`", "$$", "$")):
        return False
    if text.replace("**", "").count("*") % 2 or text.endswith(("\\", "!", "]")):
        return False  # after `!` may come an image's `[`, after `]` a link's `(`
    if text.count("\\(") != text.count("\\)") or text.count("\\[") != text.count("\\]"):
        return False
    links = "[" in text or "](" in text
    if links and (text.count("[") != text.count("]") or text.count("(") != text.count(")")):
        return False
    target = text.rfind("](")  # the last link's address: closed after it, whatever came before
    if target >= 0 and text.count("(", target) > text.count(")", target):
        return False
    return text.count("<") == text.count(">")


def _sealed(node: SyntaxTreeNode, complete_lines: int) -> bool:
    """True when nothing written after the last block can change it: a heading or a rule, or a block
    that a blank line ends and a blank line follows (not a list: a blank line does not end one)."""
    if node.type in ALWAYS_SEALED:
        return True
    followed = node.map is not None and node.map[1] < complete_lines
    return node.type in SEALED_BY_BLANK and followed


def _no_underline(source: str, *, complete: bool = False) -> str:
    """A paragraph some of which is out cannot become a setext heading: a `---` or `===` line under it
    gets a blank line before it (a rule, or text), so that what went out keeps its reading. Only lines
    that continue the paragraph are looked at: a blank line, or a line that begins another block (a
    fence, a list item, a quote, a heading, a formula), ends it. `complete`: the last line is too."""
    lines = source.split("\n")
    for index, line in enumerate(lines[1:] if complete else lines[1:-1], 1):  # the last may still grow
        if not line.strip() or _INTERRUPTS.match(line):
            break  # the paragraph ended
        if _UNDERLINE.fullmatch(line):
            return "\n".join([*lines[:index], "", *lines[index:]])
    return source


def _paragraph_lines(node: SyntaxTreeNode) -> list[str] | None:
    """A paragraph's source lines (without its container's marks), when they are its chat lines one for
    one (no mark spanning lines joined two of them); else None."""
    inline = node.children[0] if node.children else None
    if inline is None or inline.type != "inline":
        return None
    raw = inline.content.split("\n")
    return raw if len(raw) == inline_text(node).count("\n") + 1 else None


def _open_from(lines: list[str]) -> int:
    """The first line from which a formula (`$$`, `\\[`) or a link's `[` is open, no later line closing
    it; len(lines) when none is: what follows may turn those lines into a formula or a link. A `[` with a
    `)` after it on its line is an interval (`[0, 1)`), not a link's text."""
    opened: dict[str, int] = {}
    for index, line in enumerate(lines):
        for _ in range(line.count("$$")):
            if opened.pop("$$", None) is None:
                opened["$$"] = index
        for mark, opens, closes in (("\\[", "\\[", "\\]"), ("[", "[", "]")):
            depth = line.count(opens) - line.count(closes)
            if depth > 0 and mark == "[" and line.rfind(")") > line.rfind("["):
                continue  # an interval
            if depth > 0:
                opened.setdefault(mark, index)
            elif depth < 0 or (mark in opened and line.rfind(closes) > line.rfind(opens)):
                opened.pop(mark, None)
    return min(opened.values(), default=len(lines))


# --- blocks ---------------------------------------------------------------------------------------


def render_block(node: SyntaxTreeNode, depth: int = 0) -> Block:
    """One block as chat lines."""
    kind = node.type
    if kind == "paragraph":
        lines = [line.rstrip() for line in inline_text(node).split("\n")]
        final = len(lines) - 1 if sum(map(len, lines)) > HOLD_CHARS else 0
        raw = _paragraph_lines(node)
        return Block(lines, min(final, _open_from(raw)) if raw is not None else 0)
    if kind == "heading":
        text = " ".join(inline_text(node).split())
        level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
        return Block([texts.CHAT_HEADING.format(text=text) if level <= 3 else text], 0)
    if kind in ("fence", "code_block"):
        return _code(node)
    if kind in ("math_block", "math_block_label"):
        return Block([latex.to_text(node.content)], 0)
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, depth)
    if kind == "table":
        return _table(node)
    if kind == "blockquote":
        inner = _stack(node.children, depth, blank=True)
        return Block([(texts.CHAT_QUOTE + line).rstrip() for line in inner.lines], inner.final)
    if kind == "hr":
        return Block([texts.CHAT_RULE], 0)
    text = node.content or inline_text(node)  # anything else (a plugin's block): its text
    return Block([line.rstrip() for line in text.split("\n")], 0)


def _stack(nodes: Sequence[SyntaxTreeNode], depth: int, *, blank: bool) -> Block:
    """Blocks one under the other (with a blank line between them when `blank`)."""
    lines: list[str] = []
    final = 0
    for index, node in enumerate(nodes):
        if blank and lines:
            lines.append("")
        block = render_block(node, depth)
        final = len(lines) + block.final if index == len(nodes) - 1 else 0
        lines.extend(block.lines)
    return Block(lines, final)


def _code(node: SyntaxTreeNode) -> Block:
    code = node.content.removesuffix("\n").split("\n") if node.content else []
    if node.type == "code_block":  # indented code: trailing blank lines may still turn out to be text
        return Block(code, 0)
    lang = node.info.split()[0] if node.info.split() else texts.CHAT_CODE_DEFAULT
    lines = [texts.CHAT_CODE_OPEN.format(lang=lang), *code, texts.CHAT_CODE_CLOSE]
    return Block(lines, len(lines) - 1)  # every line written is final; the closing line may not be


def _list(node: SyntaxTreeNode, depth: int) -> Block:
    ordered = node.type == "ordered_list"
    start = int(node.attrs.get("start", 1)) if ordered else 1
    lines: list[str] = []
    final = 0
    for index, item in enumerate(node.children):
        marker = f"{start + index}. " if ordered else BULLETS[min(depth, len(BULLETS) - 1)]
        body = _stack(item.children, depth + 1, blank=False)
        item_lines = body.lines or [""]
        indent = " " * len(marker) if ordered else "  "
        shaped = [marker + item_lines[0]] + [(indent + line) if line else "" for line in item_lines[1:]]
        final = len(lines) + body.final if index == len(node.children) - 1 else 0
        lines.extend(line.rstrip() for line in shaped)
    return Block(lines, final)


def _table(node: SyntaxTreeNode) -> Block:
    rows = [
        [" ".join(inline_text(cell).split()) for cell in row.children]
        for section in node.children
        for row in section.children
    ]
    head, body = (rows[0], rows[1:]) if node.children and node.children[0].type == "thead" else ([], rows)
    if not body:
        return Block([" | ".join(cell for cell in head if cell)], 0)
    per_row = [_row(head, row) for row in body]
    lines = [line for row_lines in per_row for line in row_lines]
    return Block(lines, len(lines) - len(per_row[-1]))


def _row(head: list[str], row: list[str]) -> list[str]:
    """Two columns: `key：value`. More: the first cell, then `header：value` for the others."""
    if len(row) == 1:
        return [row[0]]
    if len(row) == 2:
        key, value = row
        return [f"{key}{_colon(key + value)}{value}" if key and value else key or value]
    name = row[0] or (head[0] if head else "")
    lines = [BULLETS[0] + name]
    for index, value in enumerate(row[1:], 1):
        label = head[index] if index < len(head) else ""
        if value:
            lines.append(f"  {label}{_colon(label + value)}{value}" if label else f"  {value}")
    return lines


def _colon(text: str) -> str:
    """A full-width colon in a Chinese line, `: ` in any other."""
    wide = any(0x2E80 <= ord(char) <= 0x9FFF or 0xFF00 <= ord(char) <= 0xFFEF for char in text)
    return "：" if wide else ": "


# --- inline text ----------------------------------------------------------------------------------


def inline_text(node: SyntaxTreeNode) -> str:
    """The text of a block's inline content (its marks dropped, links and images spelled out)."""
    pieces: list[str] = []
    for child in node.children:
        pieces.append(_inline(child))
    text = "".join(pieces)
    if _URL_END in text:
        text = _space_after_urls(text)
    return text


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "text":
        return node.content
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return node.content
    if kind in ("math_inline", "math_inline_double"):
        return latex.to_text(node.content)
    if kind == "link":
        return _link(inline_text(node), str(node.attrs.get("href", "")))
    if kind == "image":
        alt = inline_text(node) or str(node.attrs.get("alt", ""))
        return texts.CHAT_IMAGE.format(alt=alt, url=node.attrs.get("src", "")) + _URL_END
    if node.children:  # strong, em, s, inline: their text
        return "".join(_inline(child) for child in node.children)
    return node.content


def _link(text: str, href: str) -> str:
    shown = text.strip()
    if not href or href in (shown, f"mailto:{shown}"):
        return (shown or href) + (_URL_END if href else "")
    return f"{text} {href}{_URL_END}"


def _space_after_urls(text: str) -> str:
    """An address followed by more text gets a space, so that WeChat's link ends where it should."""
    parts = text.split(_URL_END)
    joined = parts[0]
    for part in parts[1:]:
        needs_space = part and not part[0].isspace() and part[0].isascii()
        joined += (" " if needs_space else "") + part
    return joined


def _walk(node: SyntaxTreeNode) -> list[SyntaxTreeNode]:
    found = [node]
    for child in node.children:
        found.extend(_walk(child))
    return found
