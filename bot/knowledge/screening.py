"""Refusing a hostile file before a reader opens it: a file whose content is not what its name says
(sniffed from its first bytes), and a zip bomb named .docx. Called by bot/knowledge/formats.py, so
`make kb-add`, `python -m bot.ops.kb add` and the console's upload are all screened the same way.

Why a zip's central directory is enough: python-docx reads each part with `zipfile.ZipFile.read`,
which never returns more than the size the directory declares for an entry (it stops there, and a
stream that would go on fails its CRC check). So the declared sizes bound what opening the file can
cost; they are checked here before python-docx sees the file. Its XML parser does not expand
entities, and pypdf caps what one PDF stream may decompress to, so those bombs are theirs to stop.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

#: a DOCX holds a few dozen parts; one with more is not a Word document (or is a bomb)
MAX_ZIP_ENTRIES = 2000
#: what all of a DOCX's parts may hold once uncompressed (images included: python-docx loads them all)
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
#: Word's XML compresses 5–30 times; deflate's ceiling is about 1,000. An entry beyond this ratio…
MAX_RATIO = 100
#: …is refused only when it is this large once uncompressed (a tiny part may compress very well)
RATIO_FLOOR_BYTES = 1024 * 1024
#: the parts every Word document has
DOCX_PARTS = ("[Content_Types].xml", "word/document.xml")
#: first bytes of binary files that are never text (zip, PDF, images, executables, archives, Office 97)
BINARY_MAGIC = (
    b"PK\x03\x04", b"%PDF-", b"\x89PNG", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"\x7fELF",
    b"Rar!\x1a", b"7z\xbc\xaf", b"\x1f\x8b", b"\xd0\xcf\x11\xe0",
)  # fmt: skip
#: byte-order marks of UTF-16 and UTF-32: such text files hold NUL bytes
TEXT_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: a PDF's header may follow a little garbage (the spec allows it within the first 1,024 bytes)
PDF_HEADER_WITHIN = 1024
#: bytes of a text file looked at for NUL bytes
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Refusal:
    """Why a file is refused: `reason` ("content" or "bomb") for a caller that words it its own way,
    `message` for the operator's shell."""

    reason: str
    message: str


def screen(kind: str, data: bytes) -> Refusal | None:
    """None when `data` may go to the reader of `kind` (markdown, text, html, pdf, docx)."""
    if kind == "pdf":
        return _pdf(data)
    if kind == "docx":
        return _docx(data)
    return _text(data)


def _pdf(data: bytes) -> Refusal | None:
    if b"%PDF-" not in data[:PDF_HEADER_WITHIN]:
        return Refusal("content", "not a PDF file (no %PDF- header): is its name right?")
    return None


def _text(data: bytes) -> Refusal | None:
    head = data[:SNIFF_BYTES]
    if head.startswith(BINARY_MAGIC):
        return Refusal("content", "not a text file (its content is binary): is its name right?")
    if b"\x00" in head and not head.startswith(TEXT_BOMS):
        return Refusal("content", "not a text file (it holds NUL bytes): is its name right?")
    return None


def _docx(data: bytes) -> Refusal | None:
    if not data.startswith(b"PK\x03\x04"):
        return Refusal("content", "not a DOCX file (a Word document is a zip): is its name right?")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()  # the central directory only: nothing is decompressed
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        return Refusal("content", f"not a readable DOCX ({exc})")
    if (refusal := zip_bomb(entries)) is not None:
        return refusal
    names = {entry.filename for entry in entries}
    if not all(part in names for part in DOCX_PARTS):
        return Refusal("content", "not a DOCX file (the zip has no word/document.xml): is its name right?")
    return None


def zip_bomb(entries: list[zipfile.ZipInfo]) -> Refusal | None:
    """A refusal when the entries would cost too much to open: too many, too large in all, or one
    compressed far beyond what a document's parts ever are."""
    if len(entries) > MAX_ZIP_ENTRIES:
        return Refusal("bomb", f"the zip holds {len(entries)} entries (at most {MAX_ZIP_ENTRIES})")
    total = sum(entry.file_size for entry in entries)
    if total > MAX_UNZIPPED_BYTES:
        return Refusal("bomb", f"the zip would unpack to {total:,} bytes (at most {MAX_UNZIPPED_BYTES:,})")
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
            return Refusal("bomb", f"{entry.filename} is compressed {ratio:,.0f} times (at most {MAX_RATIO})")
    return None
