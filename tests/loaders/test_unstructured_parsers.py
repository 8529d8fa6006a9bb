"""`milvus_rag.loaders.unstructured_parsers`: the optional unstructured path and its fallbacks."""

from __future__ import annotations

import socket
import sys
import time

import pytest
from milvus_rag.loaders import formats
from milvus_rag.loaders.formats import (
    UnreadableFile,
    parse_file,
    unstructured_status,
)

from tests.support.formats import (
    HTML,
    PASSWD_MARKERS,
    XXE_DOCUMENT,
    make_docx,
    raising_parser,
    replace_part,
)

# --------------------------------------------------------------------------- unstructured


def test_unstructured_status_is_fast_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("unstructured_status() touched the network")

    imported_before = "unstructured" in sys.modules
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    unstructured_status.cache_clear()
    started = time.monotonic()
    usable, reason = unstructured_status()
    assert time.monotonic() - started < 5
    assert isinstance(usable, bool) and reason and "\n" not in reason
    assert unstructured_status() == (usable, reason)  # cached
    if not imported_before:
        assert "unstructured" not in sys.modules  # never imported: its import pings telemetry


def test_forced_unstructured_raises_when_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "unstructured_status", lambda: (False, "no spaCy model"))
    with pytest.raises(UnreadableFile, match="unstructured cannot run offline: no spaCy model"):
        parse_file("a.html", HTML, use_unstructured=True)


@pytest.mark.slow
def test_auto_falls_back_when_unstructured_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "unstructured_status", lambda: (True, "pretend"))
    monkeypatch.setitem(formats._UNSTRUCTURED_PARSERS, "html", raising_parser)
    parsed = parse_file("a.html", HTML)
    assert parsed.text.startswith("# Milvus Overview")
    assert parsed.warnings[0].startswith("unstructured failed (parser failed: KeyError")
    with pytest.raises(UnreadableFile, match="^unstructured failed: parser failed: KeyError"):
        parse_file("a.html", HTML, use_unstructured=True)


def test_unstructured_html_path() -> None:
    usable, reason = unstructured_status()
    if not usable:
        pytest.skip(f"unstructured not usable offline: {reason}")
    parsed = parse_file("page.html", HTML, use_unstructured=True, parse_timeout=120)
    assert parsed.format == "html"
    assert "Milvus Overview" in parsed.text and "vector database" in parsed.text
    assert "SCRIPT-TEXT" not in parsed.text and "STYLE-TEXT" not in parsed.text


def test_unstructured_docx_path_refuses_xxe() -> None:
    usable, reason = unstructured_status()
    if not usable:
        pytest.skip(f"unstructured not usable offline: {reason}")
    parsed = parse_file("guide.docx", make_docx(), use_unstructured=True, parse_timeout=120)
    assert "Milvus stores vectors in segments." in parsed.text
    data = replace_part(make_docx(), "word/document.xml", XXE_DOCUMENT)
    with pytest.raises(UnreadableFile, match="^refused:") as info:
        parse_file("evil.docx", data, use_unstructured=True, parse_timeout=120)
    assert not any(marker in str(info.value) for marker in PASSWD_MARKERS)
