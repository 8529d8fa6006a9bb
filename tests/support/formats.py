"""What the parsers' tests share: generated PDFs and DOCX files, HTML, parsers for the worker
(module-level, so that the parser worker can import them by name).
"""

from __future__ import annotations

import io
import zipfile

import pytest

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


PASSWD_MARKERS = ("root:", "/bin/", "nologin")


def raising_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    raise KeyError("boom\nsecond line")


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


def assert_one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message
    return message


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
