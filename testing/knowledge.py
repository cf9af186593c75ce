"""Documents for the knowledge base's tests and benchmark: files of every supported kind written from
one description (title, sections of paragraphs, link), and articles in the shape of WeChat's
freepublish/batchget and material/batchget_material items."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import docx
import jieba
import numpy as np
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

#: reportlab's built-in Chinese font (an Adobe CID font: nothing to download or embed)
PDF_FONT = "STSong-Light"
#: characters per PDF line (the text is cut into lines as a real PDF's is)
PDF_LINE_CHARS = 34


@dataclass(frozen=True)
class Spec:
    """A document: its title, its sections (heading, paragraphs), and its link if it has one."""

    title: str
    sections: list[tuple[str, list[str]]]
    url: str = ""
    author: str = ""
    digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def paragraphs(self) -> list[str]:
        return [paragraph for _, paragraphs in self.sections for paragraph in paragraphs]


def write(spec: Spec, path: Path, encoding: str = "utf-8") -> Path:
    """The document as a file of the kind its suffix names (.md, .txt, .html, .pdf, .docx)."""
    suffix = path.suffix.lower()
    if suffix == ".md":
        path.write_text(markdown(spec), encoding=encoding)
    elif suffix == ".txt":
        path.write_text(plain_text(spec), encoding=encoding)
    elif suffix in (".html", ".htm"):
        path.write_text(wechat_page(spec), encoding=encoding)
    elif suffix == ".pdf":
        write_pdf(spec, path)
    elif suffix == ".docx":
        write_docx(spec, path)
    else:
        raise ValueError(f"no writer for {suffix}")
    return path


def markdown(spec: Spec) -> str:
    parts = [f"# {spec.title}", ""]
    for heading, paragraphs in spec.sections:
        if heading:
            parts += [f"## {heading}", ""]
        for paragraph in paragraphs:
            parts += [paragraph, ""]
    return "\n".join(parts)


def plain_text(spec: Spec) -> str:
    lines = [spec.title, ""]
    for heading, paragraphs in spec.sections:
        lines += ([heading] if heading else []) + paragraphs + [""]
    return "\n".join(lines)


def article_html(spec: Spec) -> str:
    """An article's body as WeChat's API gives it: sections and spans with inline styles, images by
    data-src."""
    parts = []
    for heading, paragraphs in spec.sections:
        if heading:
            parts.append(
                f'<h2 style="font-size:18px"><span style="color:#333">{html.escape(heading)}</span></h2>'
            )
        for paragraph in paragraphs:
            text = html.escape(paragraph)
            parts.append(f'<p style="line-height:1.75em"><span style="font-size:15px">{text}</span></p>')
        parts.append('<p><img data-src="https://mmbiz.qpic.cn/x/640" data-type="png"></p>')
    return f'<section style="margin:0 8px">{"".join(parts)}</section>'


def wechat_page(spec: Spec) -> str:
    """A WeChat article page as a browser saves it: head meta, page furniture, scripts, the article in
    #js_content."""
    title, url = html.escape(spec.title), html.escape(spec.url)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta property="og:title" content="{title}"><meta property="og:url" content="{url}">
<style>.rich_media_content {{ overflow: hidden; }}</style>
<script>var msg_link = "{url}"; var biz = "MzA3";</script></head>
<body><div id="js_article" class="rich_media">
<div class="rich_media_inner"><h1 class="rich_media_title" id="activity-name">{title}</h1>
<div id="meta_content"><span class="rich_media_meta_text">{html.escape(spec.author)}</span>
<a id="js_name">公众号</a></div>
<div class="rich_media_content" id="js_content">{article_html(spec)}</div>
<div id="js_pc_qr_code"><p>微信扫一扫关注该公众号</p></div></div></div>
<script>window.__QMTPL_SSR_DATA__ = {{"title": "{title}"}};</script></body></html>"""


def write_pdf(spec: Spec, path: Path) -> None:
    """A PDF with Chinese text (reportlab's CID font) and its title in the metadata; paragraphs are cut
    into lines, as in a real report."""
    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    pdf.setTitle(spec.title)
    y = _pdf_line(pdf, spec.title, 800, size=16)
    for heading, paragraphs in spec.sections:
        if heading:
            y = _pdf_line(pdf, heading, y - 8, size=13)
        for paragraph in paragraphs:
            for start in range(0, len(paragraph), PDF_LINE_CHARS):
                y = _pdf_line(pdf, paragraph[start : start + PDF_LINE_CHARS], y)
            y -= 10  # an empty line between paragraphs
    pdf.save()


def _pdf_line(pdf: canvas.Canvas, text: str, y: float, size: int = 11) -> float:
    if y < 60:
        pdf.showPage()
        y = 800
    pdf.setFont(PDF_FONT, size)
    pdf.drawString(60, y, text)
    return y - size * 1.6


def write_docx(spec: Spec, path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = spec.title
    document.add_heading(spec.title, level=1)
    for heading, paragraphs in spec.sections:
        if heading:
            document.add_heading(heading, level=2)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))


def news_item(spec: Spec, deleted: bool = False) -> dict[str, Any]:
    return {
        "title": spec.title,
        "author": spec.author,
        "digest": spec.digest,
        "content": article_html(spec),
        "content_source_url": "",
        "thumb_media_id": "THUMB",
        "url": spec.url,
        "is_deleted": deleted,
    }


def published_item(article_id: str, update_time: int, *specs: Spec, deleted: bool = False) -> dict[str, Any]:
    """One item of freepublish/batchget: a publication of one or more articles."""
    news = [news_item(spec, deleted) for spec in specs]
    return {
        "article_id": article_id,
        "update_time": update_time,
        "content": {"news_item": news, "create_time": update_time, "update_time": update_time},
    }


def material_item(media_id: str, update_time: int, *specs: Spec) -> dict[str, Any]:
    """One item of material/batchget_material (type news)."""
    news = [{k: v for k, v in news_item(spec).items() if k != "is_deleted"} for spec in specs]
    return {"media_id": media_id, "update_time": update_time, "content": {"news_item": news}}


def filler_texts(count: int, words: int = 110, seed: int = 7) -> list[str]:
    """`count` texts of `words` Chinese words each, drawn from jieba's dictionary by frequency: text
    with the statistics of Chinese (a knowledge base of thousands of documents about nothing)."""
    vocabulary, weights = _dictionary()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(vocabulary), size=(count, words), p=weights)
    texts = []
    for row in picks:
        sentence = [vocabulary[i] for i in row]
        for cut in range(17, words, 17):  # sentences of ~17 words
            sentence[cut] += "。"
        texts.append("".join(sentence) + "。")
    return texts


#: topical text: the commonest words (function words, mostly) and the content words topics draw from
COMMON_WORDS, CONTENT_WORDS, TOPIC_WORDS = 300, 60_000, 300


def topical_texts(count: int, words: int = 110, per_topic: int = 5, seed: int = 7) -> list[str]:
    """Like `filler_texts`, but each run of `per_topic` texts (a document) is about one topic: its
    content words come from the topic's own few hundred words, as in real articles; the commonest
    words of Chinese fill the rest. A question rarely finds its words together in such text by chance,
    where in `filler_texts` (every word anywhere) it often does: the worst case."""
    vocabulary, weights = _dictionary()
    order = np.argsort(-weights)
    common, content = order[:COMMON_WORDS], order[COMMON_WORDS:CONTENT_WORDS]
    rng = np.random.default_rng(seed)
    common_p = weights[common] / weights[common].sum()
    content_p = np.sqrt(weights[content])
    content_p /= content_p.sum()
    texts = []
    for start in range(0, count, per_topic):
        topic = rng.choice(content, size=TOPIC_WORDS, replace=False, p=content_p)
        for _ in range(min(per_topic, count - start)):
            from_topic = rng.random(words) < 0.55
            picks = np.where(
                from_topic, rng.choice(topic, size=words), rng.choice(common, size=words, p=common_p)
            )
            sentence = [vocabulary[i] for i in picks]
            for cut in range(17, words, 17):
                sentence[cut] += "。"
            texts.append("".join(sentence) + "。")
    return texts


@cache
def _dictionary() -> tuple[tuple[str, ...], np.ndarray]:
    """jieba's words and their frequencies, kept for the session. A tuple of strings, not a list: the
    garbage collector stops tracking such a tuple, where it walked a list's 350,000 items at every
    collection (20 ms after each test of the session, tests/conftest.py's no_leaked_connections)."""
    with jieba.get_dict_file() as handle:
        entries = [line.decode("utf-8").split()[:2] for line in handle]
    vocabulary = tuple(word for word, _ in entries)
    counts = np.asarray([int(count) for _, count in entries], dtype=np.float64)
    return vocabulary, counts / counts.sum()
