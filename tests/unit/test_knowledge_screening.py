"""Hostile files refused before a reader opens them (bot/knowledge/screening.py, through formats.py):
zip bombs named .docx — by ratio, by total size, by entry count — and content that is not what the
file's name says. What `make kb-add` and the console's upload both go through."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import docx
import pytest

from bot.knowledge import screening
from bot.knowledge.formats import TextBudget, UnreadableFile, read_data, read_file
from testing.knowledge import Spec, write

SPEC = Spec("季度策略", [("观点", ["看好高股息板块，建议超配公用事业与银行。"])])


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def bomb_docx(size: int = 4 * 1024 * 1024) -> bytes:
    """A .docx in form (its two required parts), whose document.xml is megabytes of one byte."""
    return zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"0" * size})


@pytest.fixture
def docx_never_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def opened(*args: object, **kwargs: object) -> None:
        raise AssertionError("python-docx opened a file that should have been refused")

    monkeypatch.setattr(docx, "Document", opened)


def test_a_zip_bomb_named_docx_is_refused_before_python_docx_opens_it(docx_never_opened: None) -> None:
    data = bomb_docx()
    assert len(data) < 10_000  # 4 MiB in a few kilobytes: about a thousand times
    with pytest.raises(UnreadableFile, match=r"word/document\.xml is compressed [\d,]+ times") as caught:
        read_data("report.docx", data)
    assert caught.value.reason == "bomb"


def test_make_kb_add_refuses_it_the_same_way(tmp_path: Path, docx_never_opened: None) -> None:
    path = tmp_path / "report.docx"
    path.write_bytes(bomb_docx())
    with pytest.raises(UnreadableFile, match="compressed") as caught:
        read_file(path)
    assert caught.value.reason == "bomb"


def test_a_zip_of_too_many_entries_is_refused(docx_never_opened: None) -> None:
    parts = {f"word/media/{n}.xml": b"<x/>" for n in range(screening.MAX_ZIP_ENTRIES)}
    data = zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>", **parts})
    with pytest.raises(UnreadableFile, match=r"2,?002 entries") as caught:
        read_data("many.docx", data)
    assert caught.value.reason == "bomb"


def test_entries_that_would_unpack_to_too_much_in_all_are_refused() -> None:
    """Declared sizes are what zipfile holds python-docx to: each entry modestly compressed, too much
    in all."""
    entries = []
    for n in range(3):
        entry = zipfile.ZipInfo(f"word/media/image{n}.png")
        entry.file_size, entry.compress_size = 90 * 1024 * 1024, 80 * 1024 * 1024
        entries.append(entry)
    refusal = screening.zip_bomb(entries)
    assert refusal is not None and refusal.reason == "bomb"
    assert "283,115,520 bytes" in refusal.message


def test_a_small_part_that_compresses_very_well_is_not_a_bomb() -> None:
    entry = zipfile.ZipInfo("word/styles.xml")
    entry.file_size, entry.compress_size = screening.RATIO_FLOOR_BYTES, 100  # 10,000 times, but 1 MiB
    assert screening.zip_bomb([entry]) is None


def test_a_real_word_document_passes(tmp_path: Path) -> None:
    data = write(SPEC, tmp_path / "strategy.docx").read_bytes()
    assert screening.screen("docx", data) is None
    assert read_data("strategy.docx", data).title == "季度策略"


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("report.docx", b"%PDF-1.7\n...", "not a DOCX file"),
        ("report.docx", zipped({"hello.txt": b"hi"}), "no word/document.xml"),
        ("report.docx", b"PK\x03\x04 truncated", "not a readable DOCX"),
        ("report.pdf", b"PK\x03\x04\x14\x00rest of a zip", "not a PDF file"),
        ("report.pdf", "<html>一份网页</html>".encode(), "not a PDF file"),
        ("notes.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("notes.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "NUL bytes"),
        ("page.html", zipped({"a.html": b"<p>x</p>"}), "binary"),
    ],
)
def test_content_that_is_not_what_the_name_says_is_refused(name: str, data: bytes, said: str) -> None:
    with pytest.raises(UnreadableFile, match=said) as caught:
        read_data(name, data)
    assert caught.value.reason == "content"


def test_text_in_utf16_is_not_mistaken_for_binary() -> None:
    data = "季度策略\n看好高股息板块。".encode("utf-16")
    assert screening.screen("text", data) is None
    assert read_data("notes.txt", data).title == "季度策略"


def test_an_unsupported_name_is_refused_by_kind() -> None:
    with pytest.raises(UnreadableFile, match=r"unsupported kind \.exe") as caught:
        read_data("setup.exe", b"MZ")
    assert caught.value.reason == "kind"


def test_a_reader_stops_as_soon_as_the_text_is_over_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's cap on text: a PDF's pages are read only until it is passed (the slow part)."""
    import pypdf

    pages = [("", [f"第{n}页：" + "红利策略建议超配公用事业与银行。" * 40]) for n in range(6)]
    path = write(Spec("长报告", pages), tmp_path / "long.pdf")
    read: list[int] = []
    extract = pypdf.PageObject.extract_text

    def counted(page: pypdf.PageObject, *args: Any, **kwargs: Any) -> str:
        read.append(1)
        return str(extract(page, *args, **kwargs))

    monkeypatch.setattr(pypdf.PageObject, "extract_text", counted)
    total = len(read_data("long.pdf", path.read_bytes()).text)
    pages_in_all, read[:] = len(read), []
    with pytest.raises(UnreadableFile, match="more than 1,000 characters") as caught:
        read_data("long.pdf", path.read_bytes(), max_chars=1000)
    assert caught.value.reason == "too_long"
    assert total > 1000 and 0 < len(read) < pages_in_all


def test_the_budget_has_a_deadline_and_every_piece_costs_a_character() -> None:
    now = [100.0]
    budget = TextBudget("slow.pdf", None, seconds=20.0, clock=lambda: now[0])
    budget.spend("第一页")
    now[0] += 20.5
    with pytest.raises(UnreadableFile, match="not read within 20 s") as caught:
        budget.spend("")  # a page without text still counts: the clock is looked at
    assert caught.value.reason == "too_slow"
    empty = TextBudget("empty.docx", 3)
    for _ in range(3):
        empty.spend("")
    with pytest.raises(UnreadableFile, match="more than 3 characters"):
        empty.spend("")  # a million empty paragraphs end at the limit, not after minutes


def test_html_with_more_tags_than_the_budget_is_refused_before_it_is_parsed() -> None:
    """10 MB of empty tags took 46 s and 700 MB to parse, all before any text was counted."""
    markup = b"<html><body>" + b"<p></p>" * 200_000 + b"</body></html>"
    with pytest.raises(UnreadableFile, match="more than 300,000 tags") as caught:
        read_data("tags.html", markup, max_chars=300_000)
    assert caught.value.reason == "too_long"
    page = "<html><head><title>短文</title></head><body><p>红利策略。</p></body></html>".encode()
    assert read_data("ok.html", page, max_chars=300_000).title == "短文"
