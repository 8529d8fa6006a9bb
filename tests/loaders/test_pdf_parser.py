"""`milvus_rag.loaders.pdf_parser`: pages, blank pages, corrupt, image-only and encrypted PDFs."""

from __future__ import annotations

import io

import pypdf
import pytest
from milvus_rag.loaders.formats import (
    ParsedFile,
    UnreadableFile,
    parse_file,
)

from tests.support.formats import assert_one_line, make_pdf

# --------------------------------------------------------------------------- pdf


def test_generated_pdf_is_valid_for_pypdf() -> None:
    reader = pypdf.PdfReader(io.BytesIO(make_pdf(["Alpha page", "Beta page"])))
    assert [p.extract_text() for p in reader.pages] == ["Alpha page", "Beta page"]


@pytest.mark.slow
def test_pdf_pages_joined_with_blank_lines() -> None:
    data = make_pdf(["Milvus stores vectors.", "Second page (with parens)."])
    parsed = parse_file("guide.pdf", data, use_unstructured=False)
    assert parsed == ParsedFile("Milvus stores vectors.\n\nSecond page (with parens).", "pdf", ())


@pytest.mark.slow
def test_pdf_blank_page_gives_warning() -> None:
    parsed = parse_file("g.pdf", make_pdf(["Only text", " "]), use_unstructured=False)
    assert parsed.text == "Only text"
    assert parsed.warnings == ("1 of 2 page(s) have no extractable text",)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\ngarbage that is not a pdf",
        b"this is not a pdf at all",
        make_pdf(["truncated document"])[:150],
        b"%PDF-1.7\n" + bytes(range(256)) * 8,
    ],
)
@pytest.mark.slow
def test_corrupt_pdf_is_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableFile) as info:
        parse_file("broken.pdf", data, use_unstructured=False)
    assert_one_line(info.value)


@pytest.mark.slow
def test_pdf_library_warnings_are_reported() -> None:
    data = make_pdf(["slightly broken"]).replace(b"0000000009 00000 n", b"0000000001 00000 n")
    parsed = parse_file("b.pdf", data, use_unstructured=False)
    assert parsed.text == "slightly broken"
    assert parsed.warnings and all(w.startswith("pypdf: ") for w in parsed.warnings)


@pytest.mark.slow
def test_image_only_pdf_is_unreadable() -> None:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnreadableFile, match="no extractable text"):
        parse_file("scan.pdf", buffer.getvalue(), use_unstructured=False)


@pytest.mark.slow
def test_encrypted_pdf_is_unreadable() -> None:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(["secret"]))))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnreadableFile) as info:
        parse_file("locked.pdf", buffer.getvalue(), use_unstructured=False)
    assert "encrypted PDF" in assert_one_line(info.value)


@pytest.mark.slow
def test_pdf_encrypted_with_empty_user_password_is_read() -> None:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(["open text"]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert parse_file("o.pdf", buffer.getvalue(), use_unstructured=False).text == "open text"
