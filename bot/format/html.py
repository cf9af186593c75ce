"""The model's Markdown as HTML for the answer page: rendered here, on the server, so that the page
reads where script is blocked — code blocks highlighted (Pygments, classes styled by a stylesheet the
bot serves), tables, lists, formulas as MathML (latex2mathml; browsers render it natively).

The model's output is untrusted. Three layers keep it from running script on the page: markdown-it
leaves raw HTML as text and refuses javascript:/data: links; every rendered fragment then goes through
an allowlist sanitizer (nh3, Ammonia) that keeps only the tags and attributes below (latex2mathml
copies `\\text{<script>…}` into its output as it is: the sanitizer is what removes it); and the page's
Content-Security-Policy allows no inline script at all. External images are shown as links, not
loaded (they would tell a third party who reads the answer).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache, lru_cache
from html import escape
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from bot import texts
from bot.format import latex
from bot.format.markdown import make_parser

_RENDERING = threading.Lock()
#: every Pygments token class is prefixed, so that no answer's class can restyle the page
CODE_CLASS_PREFIX = "hl-"
#: code longer than this is shown without highlighting (Pygments is slow on huge inputs)
HIGHLIGHT_MAX_CHARS = 50_000

MATHML_TAGS = {
    "math", "mi", "mn", "mo", "ms", "mspace", "mtext", "mrow", "mfrac", "msqrt", "mroot", "mstyle",
    "merror", "mpadded", "mphantom", "mfenced", "menclose", "msub", "msup", "msubsup", "munder",
    "mover", "munderover", "mmultiscripts", "mprescripts", "none", "mtable", "mtr", "mtd",
    "mlabeledtr", "semantics", "annotation",
}  # fmt: skip
MATHML_ATTRIBUTES = {
    "display", "xmlns", "mathvariant", "stretchy", "fence", "separator", "lspace", "rspace", "minsize",
    "maxsize", "movablelimits", "accent", "accentunder", "columnalign", "columnspacing", "rowspacing",
    "columnlines", "rowlines", "frame", "displaystyle", "scriptlevel", "width", "height", "depth",
    "linethickness", "open", "close", "separators", "notation", "symmetric", "largeop", "form",
    "encoding", "align", "rowalign", "columnspan", "rowspan", "voffset",
}  # fmt: skip
HTML_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
    "span", "div", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "div": {"class"},
    "th": {"class"},
    "td": {"class"},
    **{tag: MATHML_ATTRIBUTES for tag in MATHML_TAGS},
}
#: rel of every link in an answer: no referrer, no window.opener, no ranking credit
LINK_REL = "nofollow noopener noreferrer ugc"
ALIGN_CLASSES = {
    "text-align:left": "al-left",
    "text-align:center": "al-center",
    "text-align:right": "al-right",
}


def sanitize(fragment: str) -> str:
    """Only the allowlisted tags and attributes, http(s)/mailto links, every link with LINK_REL."""
    return nh3.clean(
        fragment,
        tags=HTML_TAGS | MATHML_TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel=LINK_REL,
        strip_comments=True,
    )


@lru_cache(maxsize=256)
def to_html(markdown: str) -> str:
    """A whole answer (or the part written so far) as sanitized HTML. Cached: every reader of a page
    polling the same version of an answer gets the same rendering."""
    with _RENDERING:  # linkify-it keeps the state of its last match: one rendering at a time
        html = _parser().render(markdown)
    return sanitize(html)


@lru_cache(maxsize=64)
def text_to_html(text: str) -> str:
    """Plain text (a question, the model's thinking) as HTML paragraphs; nothing in it is markup."""
    paragraphs = [part.strip("\n") for part in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(f"<p>{escape(part).replace(chr(10), '<br>')}</p>" for part in paragraphs if part.strip())


@cache
def code_css() -> str:
    """The stylesheet of highlighted code (Pygments' default style), served by the bot."""
    formatter = HtmlFormatter(style="default", classprefix=CODE_CLASS_PREFIX)
    return str(formatter.get_style_defs(".code"))


@cache
def _formatter() -> HtmlFormatter:
    """One formatter (making one builds its whole stylesheet: milliseconds)."""
    return HtmlFormatter(nowrap=True, classprefix=CODE_CLASS_PREFIX)


@cache
def _parser() -> MarkdownIt:
    md = make_parser(linkify=True, breaks=True, highlight=_highlight, math=_math)
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.push("align_classes", _align_classes)
    return md


def _highlight(code: str, lang: str, attrs: str) -> str:
    """A fenced block as <pre class="code"><code>…</code></pre>, highlighted when the language is known."""
    return _highlighted(code, lang.split()[0] if lang.split() else "")


@lru_cache(maxsize=256)  # the blocks a page polled while written already had, rendered once
def _highlighted(code: str, name: str) -> str:
    body = escape(code)
    if name and len(code) <= HIGHLIGHT_MAX_CHARS:
        try:
            lexer = get_lexer_by_name(name)
        except ClassNotFound:
            pass
        else:
            body = pygments_highlight(code, lexer, _formatter())
    label = f' class="language-{escape(name)}"' if name else ""
    return f'<pre class="code"><code{label}>{body}</code></pre>\n'


def _math(content: str, options: dict[str, Any]) -> str:
    display = bool(options.get("display_mode"))
    mathml = latex.to_mathml(content, display=display)
    if mathml is None:  # shown as its source rather than not at all
        return f'<code class="math-source">{escape(content)}</code>'
    return mathml


def _image_as_link(
    self: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[index]
    alt = self.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src") or "")
    label = escape(texts.PAGE_IMAGE_LINK.format(alt=alt))
    return f'<a href="{escape(str(token.attrGet("src") or ""))}">{label}</a>'


def _align_classes(state: Any) -> None:
    """Table alignment as classes: the page's CSP allows no inline styles."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrGet("style"):
            style = str(token.attrGet("style")).replace(" ", "")
            token.attrs.pop("style", None)
            if style in ALIGN_CLASSES:
                token.attrSet("class", ALIGN_CLASSES[style])
