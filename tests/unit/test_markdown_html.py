"""Markdown for the answer page (bot/format/html.py): rendered on the server, sanitized."""

from __future__ import annotations

import pytest

from bot.format.html import LINK_REL, code_css, text_to_html, to_html
from testing.pages import elements


def test_code_is_highlighted_by_classes_the_bots_stylesheet_styles() -> None:
    html = to_html("```python\ndef f():\n    return 1\n```")
    assert html.startswith('<pre class="code"><code class="language-python">')
    assert '<span class="hl-k">def</span>' in html and '<span class="hl-nf">f</span>' in html
    assert ".code .hl-k" in code_css()
    assert "<script" not in to_html("```html\n<script>alert(1)</script>\n```")
    assert to_html("```nosuchlanguage\n<b>x</b>\n```").count("&lt;b&gt;") == 1


def test_tables_lists_and_alignment_without_inline_styles() -> None:
    html = to_html("| a | b |\n|:-:|--:|\n| 1 | 2 |\n\n1. x\n   - y\n")
    assert '<th class="al-center">a</th>' in html and '<td class="al-right">2</td>' in html
    assert "style=" not in html
    assert "<ol>" in html and "<ul>" in html


@pytest.mark.parametrize(
    ("source", "display"),
    [("$x^2$", "inline"), ("\\(x^2\\)", "inline"), ("$$\nx^2\n$$", "block"), ("\\[\nx^2\n\\]", "block")],
)
def test_formulas_are_mathml(source: str, display: str) -> None:
    html = to_html(source)
    assert f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{display}">' in html
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in html


def test_a_formula_that_cannot_be_converted_shows_its_source() -> None:
    assert '<code class="math-source">\\frac{1}{</code>' in to_html("$\\frac{1}{$")


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox)",
        '<a href="javascript:alert(1)">x</a>',
        "$\\text{<script>alert(1)</script>}$",
        "$$\n\\href{javascript:alert(1)}{x}\n$$",
        "<svg onload=alert(1)>",
        "<iframe src=https://evil.example></iframe>",
        "![x](javascript:alert(1))",
        "<style>body{display:none}</style>",
    ],
)
def test_nothing_in_an_answer_runs_script(hostile: str) -> None:
    for tag, attrs in elements(to_html(hostile)):
        assert tag not in ("script", "img", "iframe", "svg", "style", "object", "embed"), tag
        assert not any(name.startswith("on") for name in attrs), attrs
        for name in ("href", "src"):
            if name in attrs:
                assert attrs[name].startswith(("http://", "https://", "mailto:")), attrs


def test_links_carry_no_referrer_and_images_are_links() -> None:
    html = to_html("[站点](https://a.example/) https://b.example/ ![图](https://c.example/p.png)")
    links = [attrs for tag, attrs in elements(html) if tag == "a"]
    assert [link["href"] for link in links] == [
        "https://a.example/",
        "https://b.example/",
        "https://c.example/p.png",
    ]
    assert all(link["rel"] == LINK_REL for link in links)


def test_line_breaks_in_a_paragraph_stay_line_breaks() -> None:
    assert to_html("第一行\n第二行") == "<p>第一行<br>\n第二行</p>\n"


def test_plain_text_is_only_text() -> None:
    assert (
        text_to_html("问<b>题</b>\n第二行\n\n第二段")
        == "<p>问&lt;b&gt;题&lt;/b&gt;<br>第二行</p><p>第二段</p>"
    )


def test_a_footnote_is_shown_as_written_not_as_a_link_to_its_text() -> None:
    html = to_html("相对论[^1]。\n\n[^1]: 参见《物理学史》第3章。\n")
    assert "参见《物理学史》第3章。" in html and "<a" not in html and "%E5" not in html
