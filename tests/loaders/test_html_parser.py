"""`milvus_rag.loaders.html_parser`: text without scripts and styles, declared charsets."""

from __future__ import annotations

import pytest
from milvus_rag.loaders.formats import (
    UnreadableFile,
    parse_file,
)

from tests.support.formats import HTML


def test_html_text_without_scripts_and_styles() -> None:
    parsed = parse_file("page.html", HTML, use_unstructured=False)
    assert parsed.format == "html"
    text = parsed.text
    for hidden in ("SCRIPT", "STYLE", "COMMENT", "NOSCRIPT", "Ignored title", "color: red"):
        assert hidden not in text
    assert text.startswith("# Milvus Overview\n\nMilvus is a vector database.\nSecond line.")
    assert "\n## Storage\n" in text
    assert "- segments\n- object storage" in text
    assert "key | value\ndim | 384" in text
    assert "keep   spacing" in text


def test_html_declared_charset_is_honoured() -> None:
    data = '<meta charset="windows-1252"><p>café – ok</p>'.encode("cp1252")
    assert parse_file("a.htm", data, use_unstructured=False).text == "café – ok"


def test_html_without_text_is_unreadable() -> None:
    with pytest.raises(UnreadableFile, match="no text content"):
        parse_file("a.html", b"<html><script>x()</script></html>", use_unstructured=False)
