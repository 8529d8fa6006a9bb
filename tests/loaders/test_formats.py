"""`milvus_rag.loaders.formats`: the table of formats and everything derived from it."""

from __future__ import annotations

import logging

import pytest
from milvus_rag.loaders import formats
from milvus_rag.loaders.formats import (
    SUPPORTED_SUFFIXES,
    UnreadableFile,
    format_of,
    parse_file,
)

from milvus_rag.errors import SourceError
from tests.support.formats import HTML, make_docx

# --------------------------------------------------------------------------- suffixes


def test_supported_suffixes_and_format_of() -> None:
    assert (
        frozenset(
            {".md", ".markdown", ".mdx", ".txt", ".rst", ".text", ".html", ".htm", ".pdf", ".docx"}
        )
        == SUPPORTED_SUFFIXES
    )
    assert format_of("docs/Guide.MD") == "markdown"
    assert format_of("a.mdx") == "markdown"
    assert format_of("notes.rst") == "text"
    assert format_of("page.HTM") == "html"
    assert format_of("dir.v2/report.pdf") == "pdf"
    assert format_of("x.docx") == "docx"
    assert format_of("x.doc") is None
    assert format_of("Makefile") is None
    assert issubclass(UnreadableFile, SourceError)


def test_every_format_list_is_derived_from_the_table() -> None:
    from milvus_rag.loaders import downloads, parser_worker
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    rows = formats.FORMATS
    suffixes = [s for f in rows for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes)) and frozenset(suffixes) == SUPPORTED_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in suffixes)
    assert {f.name for f in rows} == set(formats._BUILTIN_PARSERS)
    assert {f.name for f in rows if f.unstructured} == set(formats._UNSTRUCTURED_PARSERS)
    # The URL lists of downloads.py: every suffix names a document; every content type maps
    # to its format's first suffix.
    assert downloads._DOCUMENT_SUFFIXES == SUPPORTED_SUFFIXES
    assert {t: f.suffixes[0] for f in rows for t in f.content_types} == downloads._DOCUMENT_TYPES
    # The worker loads every parser module of the table, after its own modules.
    loaded = [name for name, _ in parser_worker._worker_modules(formats.PARSER_MODULES)]
    assert loaded[-len(formats.PARSER_MODULES) :] == list(formats.PARSER_MODULES)
    for row in rows:
        assert row.parser.__module__ in formats.PARSER_MODULES
        assert row.unstructured is None or row.unstructured.__module__ in formats.PARSER_MODULES
    # The CLI's help names every suffix.
    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert all(s in result.output for s in suffixes), result.output


def test_unsupported_suffix_is_unreadable() -> None:
    with pytest.raises(UnreadableFile, match="unsupported file type '.exe'"):
        parse_file("tool.exe", b"MZ")


@pytest.mark.slow
def test_auto_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(formats, "unstructured_status", lambda: (False, "no spaCy model"))
    monkeypatch.setattr(formats, "_installed", lambda module: True)
    with caplog.at_level(logging.INFO, logger=formats.__name__):
        first = parse_file("a.html", HTML)
        parse_file("b.html", HTML)
        parse_file("c.docx", make_docx())
    notes = [r for r in caplog.records if "not usable offline" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == logging.WARNING
    assert "no spaCy model" in notes[0].getMessage()
    assert "en_core_web_sm" in notes[0].getMessage()
    assert first == parse_file("a.html", HTML, use_unstructured=False)
