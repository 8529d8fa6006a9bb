"""Format parsers: every input file is generated here; nothing touches the network."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import time
import zipfile
from collections.abc import Iterator

import pypdf
import pytest
from milvus_rag.loaders import formats
from milvus_rag.loaders.formats import (
    SUPPORTED_SUFFIXES,
    ParsedFile,
    UnreadableFile,
    format_of,
    parse_file,
    unstructured_status,
)

from milvus_rag.errors import SourceError

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
PASSWD_MARKERS = ("root:", "/bin/", "nologin")


# --------------------------------------------------------------------------- helpers
# Module-level so the parser worker can import them by name (tests.test_formats).


def slow_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    time.sleep(60)
    return "never", ()


def crashing_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    os._exit(7)


def raising_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    raise KeyError("boom\nsecond line")


def network_probe_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    results = []
    for attempt in (
        lambda: socket.getaddrinfo("example.com", 80),
        lambda: socket.create_connection(("127.0.0.1", 9), timeout=1),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9)),
    ):
        try:
            attempt()
            results.append("connected")
        except OSError as exc:
            results.append(str(exc))
    return "\n".join(results), ()


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one Helvetica text line per page, xref computed."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
            + f"] /Count {len(pages)} >>"
        ).encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def make_docx() -> bytes:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Milvus Guide", level=1)
    document.add_paragraph("Milvus stores vectors in segments.")
    document.add_heading("Storage", level=2)
    document.add_paragraph("Data goes to object storage after a flush.")
    document.add_paragraph("first bullet", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "key"
    table.cell(0, 1).text = "value"
    table.cell(1, 0).text = "dim"
    table.cell(1, 1).text = "384"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def replace_part(docx_bytes: bytes, part: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(docx_bytes))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = content if info.filename == part else source.read(info.filename)
            target.writestr(info.filename, data)
    return out.getvalue()


XXE_DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
    f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>leak &e; end</w:t></w:r></w:p>'
    "</w:body></w:document>"
).encode()

LAUGHS_DOCUMENT = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + f']>\n<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>'
    "</w:body></w:document>"
).encode()


def assert_one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(autouse=True)
def _reset_module_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(formats, "_fallback_noted", False)
    yield


@pytest.fixture(scope="module", autouse=True)
def _stop_workers() -> Iterator[None]:
    yield
    formats._shutdown_workers()


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


# --------------------------------------------------------------------------- html


HTML = b"""<!DOCTYPE html>
<html><head><title>Ignored title</title>
<script>var secret = "SCRIPT-TEXT";</script>
<style>body { color: red } .STYLE-TEXT {}</style>
<link rel="stylesheet" href="http://192.0.2.1/remote.css">
</head>
<body>
<!-- COMMENT-TEXT -->
<h1>Milvus   Overview</h1>
<p>Milvus is a
   vector database.<br>Second line.</p>
<h2>Storage</h2>
<ul><li>segments</li><li>object storage</li></ul>
<table><tr><th>key</th><th>value</th></tr><tr><td>dim</td><td>384</td></tr></table>
<noscript>NOSCRIPT-TEXT</noscript>
<img src="http://192.0.2.1/pixel.png" alt="pixel">
<pre>keep   spacing</pre>
<script type="module">import("SCRIPT2-TEXT")</script>
</body></html>
"""


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


# --------------------------------------------------------------------------- worker


@pytest.mark.slow
def test_slow_parser_times_out_and_worker_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", slow_parser)
    started = time.monotonic()
    with pytest.raises(UnreadableFile) as info:
        parse_file("slow.pdf", b"%PDF-1.4", parse_timeout=1)
    elapsed = time.monotonic() - started
    assert assert_one_line(info.value) == "parser timed out after 1 s"
    assert elapsed < 1 + 2 + 1.5  # timeout + 2 s, plus a worker start-up
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", formats._parse_pdf)
    assert parse_file("ok.pdf", make_pdf(["after timeout"])).text == "after timeout"


@pytest.mark.slow
def test_crashing_parser_is_unreadable_and_worker_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "docx", crashing_parser)
    with pytest.raises(UnreadableFile) as info:
        parse_file("crash.docx", b"PK", use_unstructured=False)
    assert assert_one_line(info.value).startswith("parser process crashed (exit code 7")
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "docx", formats._parse_docx)
    assert parse_file("ok.docx", make_docx(), use_unstructured=False).text.startswith("# Milvus")


@pytest.mark.slow
def test_unexpected_parser_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", raising_parser)
    with pytest.raises(UnreadableFile) as info:
        parse_file("x.pdf", b"%PDF")
    assert assert_one_line(info.value) == "parser failed: KeyError: 'boom\\nsecond line'"


@pytest.mark.slow
def test_worker_has_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", network_probe_parser)
    text = parse_file("probe.pdf", b"%PDF").text
    assert text.split("\n") == ["network access is disabled in the parser worker"] * 3


@pytest.mark.slow
def test_worker_is_reused_and_cheap() -> None:
    data = make_pdf(["reuse"])
    parse_file("warm.pdf", data)
    started = time.monotonic()
    for _ in range(20):
        assert parse_file("r.pdf", data).text == "reuse"
    assert (time.monotonic() - started) / 20 < 0.25


def test_parse_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="parse_timeout"):
        parse_file("a.pdf", b"%PDF", parse_timeout=0)


def test_worker_parsers_must_be_importable() -> None:
    with pytest.raises(TypeError, match="module-level"):
        formats._run_in_worker(lambda data: ("x", ()), b"x", 5)


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


@pytest.mark.slow
def test_concurrent_parses_and_shutdown() -> None:
    import concurrent.futures

    pdfs = [make_pdf([f"document {i}"]) for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda d: parse_file("c.pdf", d).text, pdfs))
    assert texts == [f"document {i}" for i in range(4)]
    pids = [w.proc.pid for w in formats._workers]
    assert pids
    formats._shutdown_workers()
    assert not formats._workers
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
