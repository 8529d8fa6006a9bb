"""`milvus_rag.loaders.docx_parser`: paragraphs, headings, lists, tables; DTDs and zip bombs refused."""

from __future__ import annotations

import io
import zipfile

import pytest
from milvus_rag.loaders import formats
from milvus_rag.loaders.formats import (
    UnreadableFile,
    parse_file,
)

from tests.support.formats import (
    PASSWD_MARKERS,
    W_NS,
    XXE_DOCUMENT,
    assert_one_line,
    make_docx,
    replace_part,
)

LAUGHS_DOCUMENT = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + f']>\n<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>'
    "</w:body></w:document>"
).encode()


# --------------------------------------------------------------------------- docx


@pytest.mark.slow
def test_docx_paragraphs_headings_lists_tables() -> None:
    parsed = parse_file("guide.docx", make_docx(), use_unstructured=False)
    assert parsed.format == "docx"
    assert parsed.text == (
        "# Milvus Guide\n\n"
        "Milvus stores vectors in segments.\n\n"
        "## Storage\n\n"
        "Data goes to object storage after a flush.\n\n"
        "- first bullet\n\n"
        "key | value\ndim | 384"
    )


@pytest.mark.slow
@pytest.mark.parametrize("document", [XXE_DOCUMENT, LAUGHS_DOCUMENT], ids=["xxe", "laughs"])
@pytest.mark.parametrize("part", ["word/document.xml", "word/styles.xml"])
def test_docx_with_dtd_is_refused(document: bytes, part: str) -> None:
    data = replace_part(make_docx(), part, document)
    with pytest.raises(UnreadableFile) as info:
        parse_file("evil.docx", data, use_unstructured=False)
    message = assert_one_line(info.value)
    assert message.startswith("refused:") and "DTD" in message
    assert not any(marker in message for marker in PASSWD_MARKERS)


def test_docx_dtd_check_before_third_party_parser() -> None:
    # The unstructured path runs the same package check before python-docx sees the file.
    for document in (XXE_DOCUMENT, LAUGHS_DOCUMENT):
        for part in ("word/document.xml", "word/settings.xml", "docProps/core.xml"):
            data = replace_part(make_docx(), part, document)
            with pytest.raises(UnreadableFile, match="^refused: .*DTD"):
                formats._check_docx_package(data)
    formats._check_docx_package(make_docx())


@pytest.mark.slow
def test_docx_zip_bomb_is_refused() -> None:
    huge = (
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>'.encode()
        + b"a" * (formats.DOCX_MAX_XML_BYTES + 10)
        + b"</w:t></w:r></w:p></w:body></w:document>"
    )
    data = replace_part(make_docx(), "word/document.xml", huge)
    assert len(data) < 1_000_000
    with pytest.raises(UnreadableFile, match="decompresses beyond 50 MB"):
        parse_file("bomb.docx", data, use_unstructured=False)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04 not really a zip", "not a DOCX"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "legacy .doc"),
        (b"<w:document>", "not a DOCX"),
    ],
)
@pytest.mark.slow
def test_broken_docx_is_unreadable(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason) as info:
        parse_file("bad.docx", data, use_unstructured=False)
    assert_one_line(info.value)


@pytest.mark.slow
def test_docx_without_document_part_is_unreadable() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(UnreadableFile, match="word/document.xml missing"):
        parse_file("x.docx", buffer.getvalue(), use_unstructured=False)


@pytest.mark.slow
def test_docx_malformed_xml_is_unreadable() -> None:
    data = replace_part(make_docx(), "word/document.xml", b"<w:document><unclosed>")
    with pytest.raises(UnreadableFile, match="malformed XML"):
        parse_file("x.docx", data, use_unstructured=False)


@pytest.mark.slow
def test_docx_localised_heading_style_uses_styles_part() -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    style = document.styles.add_style("Überschrift 1", docx.enum.style.WD_STYLE_TYPE.PARAGRAPH)
    style.element.get_or_add_pPr().append(
        docx.oxml.parse_xml(f'<w:outlineLvl xmlns:w="{W_NS}" w:val="0"/>')
    )
    document.add_paragraph("Einleitung", style="Überschrift 1")
    document.add_paragraph("Text.", style="Body Text")
    buffer = io.BytesIO()
    document.save(buffer)
    parsed = parse_file("de.docx", buffer.getvalue(), use_unstructured=False)
    assert parsed.text == "# Einleitung\n\nText."
