"""Reading a file into a Document: Markdown (markdown-it-py), plain text (any encoding, with
charset-normalizer), HTML — a saved WeChat article page included — (BeautifulSoup with lxml), PDF
(pypdf) and DOCX (python-docx). The article HTML of WeChat's API goes through the same HTML reader.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt

from bot.knowledge.documents import Block, Document
from bot.knowledge.screening import screen

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # bs4 (14 MiB) is imported where an HTML page is read: most processes never read one
    from bs4 import BeautifulSoup, Tag
    from docx.table import Table as DocxTable
    from docx.text.paragraph import Paragraph as DocxParagraph

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
#: elements whose text is never the document's (scripts, styles, WeChat's page furniture)
_SKIPPED = ("script", "style", "noscript", "template", "svg", "iframe", "head", "button", "form")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCKS = (
    *_HEADINGS,
    "p", "div", "section", "article", "li", "tr", "blockquote", "pre", "table", "ul", "ol", "dl", "dt",
    "dd", "figure", "figcaption", "header", "footer", "main", "aside", "nav", "br", "hr",
)  # fmt: skip
#: where a saved WeChat article page (or another article page) keeps the article itself
_CONTENT_ROOTS = ("#js_content", ".rich_media_content", "article", "main", "body")
#: WeChat's article pages name their link in a script: var msg_link = "…"
_MSG_LINK = re.compile(r"""msg_link\s*=\s*["'](https?://[^"']+)["']""")
#: a CJK character or full-width form: lines of Chinese join without a space
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
#: a line ending with one of these ends a paragraph (PDF) and is no title (text)
_ENDS = tuple("。！？!?；;：:…”」』）)")
#: a PDF line shorter than this share of a full line ends its paragraph
SHORT_LINE = 0.6
#: a plain text file's first line is its title when it is at most this long and ends no sentence
TITLE_LINE_CHARS = 40


class UnreadableFile(Exception):
    """The file cannot be read into text; the message says why, for the operator, and `reason` says
    it in one word for a caller that words it its own way (the console, in Chinese): "kind"
    (unsupported name), "content" (not what its name says), "bomb" (a zip too costly to open),
    "encrypted", "empty" (no text), "too_long" (more text than the caller's max_chars) or "unreadable"."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


def read_file(path: Path) -> Document:
    """A file of a supported kind, as a Document keyed by its name (the same name replaces it)."""
    kind_of(path.name)  # an unsupported name is refused before the file is read
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"{path}: {exc.strerror or exc}") from None
    return read_data(path.name, data)


def read_data(
    name: str, data: bytes, max_chars: int | None = None, max_seconds: float | None = None
) -> Document:
    """The content of a file called `name` (what make kb-add reads, what the console receives), as a
    Document keyed by that name. Screened first (bot/knowledge/screening.py): a file whose content
    is not what its name says, or a zip bomb named .docx, never reaches a reader. With `max_chars`, a
    file with more text is refused ("too_long") as soon as a reader has read that much: PDF pages and
    DOCX paragraphs are the slow part, and they stop there. With `max_seconds`, one that takes longer
    ("too_slow"), checked after each piece read (a PDF page may take seconds)."""
    kind = kind_of(name)
    refusal = screen(kind, data)
    if refusal is not None:
        raise UnreadableFile(f"{name}: {refusal.message}", refusal.reason)
    try:
        title, blocks, url = _READERS[kind](data, TextBudget(name, max_chars, max_seconds))
    except UnreadableFile:
        raise
    except Exception as exc:  # a reader's bug or a parser's surprise: the file is refused, not a 500
        log.warning("%s: the %s reader failed (%r)", name, kind, exc)
        raise UnreadableFile(f"{name}: could not be read ({type(exc).__name__})", "unreadable") from exc
    blocks = [block for block in blocks if block.text.strip()]
    if not blocks:
        raise UnreadableFile(f"{name}: no text found (a scanned PDF needs OCR first)", "empty")
    return Document(title or Path(name).stem, blocks, source="file", key=name, url=url, name=name)


def kind_of(name: str) -> str:
    """The reader a file's name asks for (UnreadableFile "kind" for an unsupported one)."""
    suffix = Path(name).suffix
    kind = SUFFIXES.get(suffix.lower())
    if kind is None:
        supported = ", ".join(sorted(SUFFIXES))
        raise UnreadableFile(
            f"{name}: unsupported kind {suffix or '(none)'} (supported: {supported})", "kind"
        )
    return kind


class TextBudget:
    """How much text a reader may still read (unlimited with `limit` None), and for how long (`seconds`,
    unlimited with None). Every piece read (a PDF page, a paragraph) costs at least one character: a
    file of a million empty paragraphs or pages of text-free drawing has no text to stop at, and its
    reading took minutes."""

    def __init__(
        self,
        name: str,
        limit: int | None,
        seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.limit, self.spent = name, limit, 0
        self.seconds, self.clock = seconds, clock
        self.deadline = None if seconds is None else clock() + seconds

    def spend(self, text: str) -> None:
        self.spent += max(len(text), 1)
        if self.limit is not None and self.spent > self.limit:
            raise UnreadableFile(
                f"{self.name}: more than {self.limit:,} characters of text (split it)", "too_long"
            )
        if self.deadline is not None and self.clock() > self.deadline:
            raise UnreadableFile(
                f"{self.name}: not read within {self.seconds:.0f} s (split it, or add it with make kb-add)",
                "too_slow",
            )


def _markdown(data: bytes, budget: TextBudget) -> tuple[str, list[Block], str]:
    source = decode_text(data)
    budget.spend(source)
    html = MarkdownIt("commonmark").enable("table").render(source)
    title, blocks, _ = html_blocks(html)
    return title, blocks, ""


def _text(data: bytes, budget: TextBudget) -> tuple[str, list[Block], str]:
    """Each line a paragraph; a short first line that ends no sentence is the title."""
    text = decode_text(data)
    budget.spend(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    title = lines[0] if lines and len(lines[0]) <= TITLE_LINE_CHARS and not lines[0].endswith(_ENDS) else ""
    return title, [Block(line) for line in lines], ""


def _html(data: bytes, budget: TextBudget) -> tuple[str, list[Block], str]:
    # parsed whole before any text is counted: more tags than the budget has characters is refused first
    # (10 MB of empty <p></p> took 46 s and 700 MB to parse; a saved article has tens of thousands)
    if budget.limit is not None and data.count(b"<") > budget.limit:
        raise UnreadableFile(f"{budget.name}: more than {budget.limit:,} tags (split it)", "too_long")
    title, blocks, url = html_blocks(data)  # markup is most of a saved page: its text is what counts
    for block in blocks:
        budget.spend(block.text)
    return title, blocks, url


def _pdf(data: bytes, budget: TextBudget) -> tuple[str, list[Block], str]:
    import pypdf  # here, not at the top: every web and worker process imports this module (27 MiB)

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("the PDF is encrypted: save a copy without a password", "encrypted")
        pages = []
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            budget.spend(pages[-1])
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except UnreadableFile:
        raise
    except Exception as exc:  # a damaged PDF makes pypdf raise its own errors and others (KeyError…)
        raise UnreadableFile(f"not a readable PDF ({exc})") from None
    return title.strip(), [Block(text) for page in pages for text in join_lines(page.splitlines())], ""


def _docx(data: bytes, budget: TextBudget) -> tuple[str, list[Block], str]:
    """Paragraphs and tables in the order the document has them (python-docx's iter_inner_content):
    a table is one block per row, under the heading it stands under."""
    import docx  # here, not at the top: only adding a file needs it (17 MiB)
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zipfile, KeyError or lxml errors for a bad file
        raise UnreadableFile(f"not a readable DOCX ({type(exc).__name__})") from None
    blocks = []
    styles = _DocxStyles()
    for item in document.iter_inner_content():
        for block in _docx_rows(item) if isinstance(item, Table) else [styles.block(item)]:
            blocks.append(block)
            budget.spend(block.text)
    title = document.core_properties.title or next((b.text for b in blocks if b.heading), "")
    return title.strip(), blocks, ""


class _DocxStyles:
    """Style names by style id: python-docx finds a style by scanning every style (the default one
    too, for each unstyled paragraph), 3 ms a paragraph — 24 s of a 300,000-character document's 26."""

    def __init__(self) -> None:
        self.names: dict[str | None, str] = {}

    def block(self, paragraph: DocxParagraph) -> Block:
        style_id = paragraph._p.style
        if style_id not in self.names:
            self.names[style_id] = (paragraph.style.name if paragraph.style is not None else "") or ""
        heading = self.names[style_id].startswith(("Heading", "Title"))  # built-in styles: English names
        return Block(paragraph.text, heading=heading)


def _docx_rows(table: DocxTable) -> Iterator[Block]:
    """One block per row, " | " between its cells (read a row at a time: the budget stops a huge table)."""
    for row in table.rows:
        yield Block(" | ".join(cell.text.strip() for cell in row.cells))


_READERS = {"markdown": _markdown, "text": _text, "html": _html, "pdf": _pdf, "docx": _docx}


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else the encoding charset-normalizer finds (GBK is common)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes  # only for files that are not UTF-8

        best = from_bytes(data).best()
        if best is None:
            raise UnreadableFile("not text in any known encoding") from None
        return str(best)


def join_lines(lines: list[str]) -> list[str]:
    """PDF text comes as lines broken inside sentences: join them into paragraphs, ending a paragraph
    at an empty line, a line that ends a sentence, or a line much shorter than the page's full lines
    (a heading, a paragraph's last line). Chinese lines join without a space."""
    widths = sorted(len(line.strip()) for line in lines if line.strip())
    full = widths[len(widths) * 3 // 4] if widths else 0  # a full line's length, roughly
    paragraphs: list[str] = []
    current = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        joiner = "" if not current or _cjk(current[-1]) or _cjk(line[0]) else " "
        current += joiner + line
        if line.endswith(_ENDS) or len(line) < full * SHORT_LINE:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return paragraphs


def _cjk(char: str) -> bool:
    return _CJK.match(char) is not None


def html_blocks(html: str | bytes) -> tuple[str, list[Block], str]:
    """(title, blocks, link) of an HTML page or fragment: a saved WeChat article page's title and link
    are read where WeChat puts them (og:title, #activity-name, msg_link)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title, url = _page_title(soup), _page_link(soup)
    for tag in soup.find_all(_SKIPPED):
        tag.decompose()
    root = next((found for selector in _CONTENT_ROOTS if (found := soup.select_one(selector))), soup)
    blocks = [block for block in _walk(root) if block.text]
    return title, blocks, url


def _page_title(soup: BeautifulSoup) -> str:
    from bs4 import Tag

    for found in (
        soup.find("meta", attrs={"property": "og:title"}),
        soup.find("meta", attrs={"name": "twitter:title"}),
    ):
        if isinstance(found, Tag) and str(found.get("content") or "").strip():
            return str(found["content"]).strip()
    for selector in ("#activity-name", ".rich_media_title", "title", "h1"):
        if (found := soup.select_one(selector)) is not None and found.get_text(strip=True):
            return " ".join(found.get_text().split())
    return ""


def _page_link(soup: BeautifulSoup) -> str:
    from bs4 import Tag

    meta = soup.find("meta", attrs={"property": "og:url"})
    canonical = soup.find("link", attrs={"rel": "canonical"})
    for found, attribute in ((meta, "content"), (canonical, "href")):
        if isinstance(found, Tag) and str(found.get(attribute) or "").startswith(("http://", "https://")):
            return str(found[attribute]).strip()
    for script in soup.find_all("script"):
        if (match := _MSG_LINK.search(script.get_text())) is not None:
            return match.group(1).replace("\\x26amp;", "&").replace("&amp;", "&")
    return ""


def _walk(root: Tag) -> list[Block]:
    """The text of `root` as blocks: a block element ends the line before and after it; a heading is a
    block of its own; a table row of several cells is a line of its own, its cells apart (`_row`).
    Inline text (spans, links, strong…) joins its line."""
    from bs4 import NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    not_text = (Comment, Declaration, Doctype, ProcessingInstruction)
    blocks: list[Block] = []
    line: list[str] = []

    def end_line() -> None:
        text = " ".join("".join(line).split())
        line.clear()
        if text:
            blocks.append(Block(text))

    def visit(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, not_text):
                continue
            if isinstance(child, NavigableString):
                line.append(str(child))
            elif isinstance(child, Tag) and child.name in _HEADINGS:
                end_line()
                blocks.append(Block(" ".join(child.get_text().split()), heading=True))
            elif isinstance(child, Tag) and len(cells := _cells(child)) > 1:
                end_line()
                blocks.append(Block(_row(cells)))
            elif isinstance(child, Tag):
                block = child.name in _BLOCKS
                if block:
                    end_line()
                visit(child)
                if block:
                    end_line()

    visit(root)
    end_line()
    return blocks


def _cells(node: Tag) -> list[Tag]:
    """The cells of a table row (none for any other element)."""
    return node.find_all(("td", "th"), recursive=False) if node.name == "tr" else []


def _row(cells: list[Tag]) -> str:
    """A table row as one line, " | " between its cells (an empty one kept, so columns stay in place):
    WeChat's editor writes no whitespace between cells, and their text ran together (2022-8.1%). A
    one-cell row (a table used for layout) is read as any other element, its paragraphs apart."""
    texts = [" ".join(block.text for block in _walk(cell)) for cell in cells]
    return " | ".join(texts) if any(texts) else ""
