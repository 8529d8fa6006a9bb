"""`milvus_rag.loaders.text_parser`: encodings (BOMs, UTF-16, cp1252, Latin-1), binary and empty files."""

from __future__ import annotations

import pytest
from milvus_rag.loaders.formats import (
    ParsedFile,
    UnreadableFile,
    parse_file,
)

from tests.support.formats import assert_one_line

# --------------------------------------------------------------------------- text


def test_markdown_utf8_bom_and_crlf() -> None:
    data = "\ufeff# Titre\r\n\r\nCafé crème\r\nline\rold mac\n".encode()
    parsed = parse_file("notes.md", data)
    assert parsed == ParsedFile("# Titre\n\nCafé crème\nline\nold mac\n", "markdown", ())


def test_text_utf16_with_bom() -> None:
    parsed = parse_file("a.txt", "héllo wörld\r\n".encode("utf-16"))
    assert parsed.text == "héllo wörld\n"
    assert parsed.format == "text"


def test_cp1252_decoded_with_warning() -> None:
    data = "naïve café – “quoted” €5".encode("cp1252")
    parsed = parse_file("legacy.txt", data)
    assert parsed.text == "naïve café – “quoted” €5"
    assert parsed.warnings == ("not UTF-8; decoded as cp1252",)


def test_latin1_fallback_when_not_cp1252() -> None:
    parsed = parse_file("odd.txt", b"abc \x81 def caf\xe9")
    assert parsed.text == "abc \x81 def café"
    assert parsed.warnings == ("not UTF-8; decoded as latin-1",)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
        bytes(range(256)) * 4,
        b"\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10abc\xff\xfe",
    ],
)
def test_binary_content_is_skipped(data: bytes) -> None:
    with pytest.raises(UnreadableFile) as info:
        parse_file("blob.txt", data)
    assert assert_one_line(info.value) == "binary content"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["empty.md", "empty.txt", "empty.html", "e.pdf", "e.docx"])
@pytest.mark.parametrize("data", [b"", b" \n\t\r\n  "])
def test_empty_files_are_skipped(name: str, data: bytes) -> None:
    with pytest.raises(UnreadableFile) as info:
        parse_file(name, data, use_unstructured=False)
    message = assert_one_line(info.value)
    if name.endswith((".md", ".txt", ".pdf")):
        assert message == "empty file"
