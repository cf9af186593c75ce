"""The name an uploaded file is kept under (bot/console/library.py): the browser's name without its
directories or control characters, Chinese kept, cut to NAME_CHARS with its suffix."""

from __future__ import annotations

import pytest

from bot.console.library import NAME_CHARS, human_size, upload_name


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("行业轮动月报.pdf", "行业轮动月报.pdf"),
        ("C:\\Users\\张三\\Desktop\\笔记.md", "笔记.md"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("report\x00.pdf", "report .pdf"),
        ("  two\t\nlines .docx  ", "two lines .docx"),
        ("...", ""),
        ("", ""),
    ],
)
def test_the_name_keeps_only_the_files_own_name(given: str, kept: str) -> None:
    assert upload_name(given) == kept


def test_a_long_name_is_cut_keeping_its_suffix() -> None:
    name = upload_name("很" * 300 + ".docx")
    assert len(name) == NAME_CHARS and name.endswith("很.docx")


def test_sizes_read_as_a_file_manager_shows_them() -> None:
    assert (human_size(10 * 1024 * 1024), human_size(64 * 1024)) == ("10 MB", "64 KB")
