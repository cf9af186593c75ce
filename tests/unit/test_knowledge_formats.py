"""Files of every supported kind, written by the tests, read into documents (bot/knowledge/formats.py)."""

from __future__ import annotations

from pathlib import Path

import docx
import pypdf
import pytest

from bot.knowledge.chunking import chunk
from bot.knowledge.formats import UnreadableFile, html_blocks, read_file
from testing.knowledge import Spec, article_html, write

SPEC = Spec(
    "低波动因子研究",
    [
        ("核心结论", ["低波动因子在中证800内的IC均值为0.045，ICIR为0.52，多空组合年化收益9.8%。"]),
        ("风险提示", ["因子可能失效，历史表现不代表未来。"]),
    ],
    url="https://mp.weixin.qq.com/s/low-vol",
    author="金工组",
)
BODY = SPEC.sections[0][1][0]


@pytest.mark.parametrize("name", ["report.md", "report.txt", "report.html", "report.pdf", "report.docx"])
def test_each_kind_gives_its_title_and_text(tmp_path: Path, name: str) -> None:
    document = read_file(write(SPEC, tmp_path / name))
    assert document.title == "低波动因子研究"
    assert document.source == "file" and document.key == name and document.name == name
    texts = [block.text for block in document.blocks]
    assert BODY in texts and "因子可能失效，历史表现不代表未来。" in texts
    assert "风险提示" in texts  # the heading survives (as a heading where the format says so)


@pytest.mark.parametrize("name", ["report.md", "report.html", "report.docx"])
def test_headings_are_marked_where_the_format_has_them(tmp_path: Path, name: str) -> None:
    document = read_file(write(SPEC, tmp_path / name))
    assert [block.text for block in document.blocks if block.heading][-2:] == ["核心结论", "风险提示"]


def test_a_saved_wechat_article_page_gives_its_link_and_only_the_article(tmp_path: Path) -> None:
    document = read_file(write(SPEC, tmp_path / "page.html"))
    assert document.url == "https://mp.weixin.qq.com/s/low-vol"
    text = document.text
    assert (
        "微信扫一扫" not in text
        and "msg_link" not in text
        and "overflow" not in text
        and "金工组" not in text
    )


def test_the_link_of_a_page_saved_without_og_url_comes_from_msg_link() -> None:
    page = (
        '<html><head><script>var msg_link = "https://mp.weixin.qq.com/s?__biz=MzA3\\x26amp;mid=1";</script>'
        '</head><body><h1 id="activity-name"> 标题 </h1>'
        '<div id="js_content"><p>正文。</p></div></body></html>'
    )
    title, blocks, url = html_blocks(page)
    assert (title, [b.text for b in blocks], url) == (
        "标题",
        ["正文。"],
        "https://mp.weixin.qq.com/s?__biz=MzA3&mid=1",
    )


def test_article_html_from_the_api_keeps_paragraphs_and_inline_text_together() -> None:
    _, blocks, _ = html_blocks(article_html(SPEC) + "<p>前<span>中</span><b>后</b></p><br>尾")
    texts = [block.text for block in blocks]
    assert texts[:2] == ["核心结论", BODY] and texts[-2:] == ["前中后", "尾"]


def test_a_table_of_a_wechat_article_keeps_its_cells_apart_and_each_row_on_its_line() -> None:
    # WeChat's editor: no whitespace between cells, a cell's text inside sections and spans
    table = (
        "<p>历年收益：</p><table><tbody>"
        "<tr><th>年份</th><th><span>收益率</span></th></tr>"
        "<tr><td><section><span>2022</span></section></td><td><p>-8.1%</p></td></tr>"
        "<tr><td>2023</td><td><strong>12.5%</strong></td></tr>"
        "<tr><td></td><td></td></tr>"
        "</tbody></table><p>以上为回测结果。</p>"
    )
    _, blocks, _ = html_blocks(table)
    assert [block.text for block in blocks] == [
        "历年收益：",
        "年份 | 收益率",
        "2022 | -8.1%",
        "2023 | 12.5%",
        "以上为回测结果。",
    ]


def test_a_table_used_for_layout_keeps_its_paragraphs() -> None:
    _, blocks, _ = html_blocks("<table><tr><td><p>第一段。</p><p>第二段。</p></td></tr></table>")
    assert [block.text for block in blocks] == ["第一段。", "第二段。"]


def test_a_docx_table_stays_where_it_is_under_its_heading(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("历年收益", level=2)
    document.add_paragraph("策略的历年收益如下。")
    table = document.add_table(rows=3, cols=2)
    for row, cells in zip(
        table.rows, [("年份", "收益率"), ("2022", "-8.1%"), ("2023", "12.5%")], strict=True
    ):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_paragraph("表后的说明。")
    document.add_heading("风险提示", level=2)
    document.add_paragraph("历史表现不代表未来。")
    document.save(str(tmp_path / "returns.docx"))
    blocks = read_file(tmp_path / "returns.docx").blocks
    assert [block.text for block in blocks] == [
        "历年收益",
        "策略的历年收益如下。",
        "年份 | 收益率",
        "2022 | -8.1%",
        "2023 | 12.5%",
        "表后的说明。",
        "风险提示",
        "历史表现不代表未来。",
    ]
    sections = {c.section for c in chunk(blocks, 30) if "2023 | 12.5%" in c.text}
    assert sections == {"历年收益"}


def test_plain_text_in_gbk_is_read(tmp_path: Path) -> None:
    document = read_file(write(SPEC, tmp_path / "notes.txt", encoding="gbk"))
    assert BODY in document.text and document.title == "低波动因子研究"


def test_a_text_file_whose_first_line_is_a_sentence_is_titled_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "会议纪要.txt"
    path.write_text("今天的会议讨论了三件事。\n第一件事是预算。\n", encoding="utf-8")
    assert read_file(path).title == "会议纪要"


def test_a_long_pdf_paragraph_is_joined_across_its_lines(tmp_path: Path) -> None:
    long = Spec("长报告", [("", ["收益率曲线在本季度明显走平，" * 12 + "长端利率下行更快。"])])
    document = read_file(write(long, tmp_path / "long.pdf"))
    assert long.paragraphs[0] in [block.text for block in document.blocks]


def test_unsupported_and_unreadable_files_say_why(tmp_path: Path) -> None:
    (tmp_path / "slides.pptx").write_bytes(b"PK")
    with pytest.raises(UnreadableFile, match=r"unsupported kind \.pptx"):
        read_file(tmp_path / "slides.pptx")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(UnreadableFile, match="not a readable PDF"):
        read_file(tmp_path / "broken.pdf")
    (tmp_path / "broken.docx").write_bytes(b"not a zip")
    with pytest.raises(UnreadableFile, match="DOCX"):
        read_file(tmp_path / "broken.docx")
    (tmp_path / "empty.md").write_text("   \n", encoding="utf-8")
    with pytest.raises(UnreadableFile, match="no text"):
        read_file(tmp_path / "empty.md")
    with pytest.raises(UnreadableFile, match=r"missing\.md"):
        read_file(tmp_path / "missing.md")


def test_an_encrypted_pdf_is_refused_with_what_to_do(tmp_path: Path) -> None:
    source = write(SPEC, tmp_path / "plain.pdf")
    writer = pypdf.PdfWriter(clone_from=str(source))
    writer.encrypt("secret", algorithm="AES-128")
    with (tmp_path / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    with pytest.raises(UnreadableFile, match="encrypted"):
        read_file(tmp_path / "locked.pdf")


def test_a_reader_that_fails_unexpectedly_refuses_the_file_instead_of_crashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.knowledge import formats

    def broken(data: bytes, budget: formats.TextBudget) -> None:
        raise RecursionError("deeply nested markup")

    monkeypatch.setitem(formats._READERS, "markdown", broken)
    with pytest.raises(UnreadableFile) as refused:
        formats.read_data("notes.md", "# 标题\n\n正文".encode())
    assert refused.value.reason == "unreadable"
    assert "RecursionError" in str(refused.value)
