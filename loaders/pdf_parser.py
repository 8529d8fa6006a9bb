"""PDF to text, model-free: pypdf, page by page.

:func:`parse_pdf` joins the pages' text with blank lines and warns about pages
without text or whose extraction failed; encrypted PDFs open only with an empty
password. It runs in the parser worker, which loads this file by path:
standard library and :mod:`milvus_rag.loaders.parser_base` only; pypdf is
imported when a file is parsed.
"""

from __future__ import annotations

import io

from milvus_rag.loaders.parser_base import UnreadableFile, describe

__all__ = ["parse_pdf"]


def parse_pdf(data: bytes) -> tuple[str, tuple[str, ...]]:
    """pypdf text, page by page, joined with blank lines."""
    import pypdf

    if not data.strip():
        raise UnreadableFile("empty file")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise UnreadableFile(f"not a readable PDF ({describe(exc)})") from None
    if encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:
            raise UnreadableFile(f"encrypted PDF that cannot be opened ({describe(exc)})") from None
        if not opened:
            raise UnreadableFile("encrypted PDF (password required)")
    try:
        pages = list(reader.pages)
    except Exception as exc:
        raise UnreadableFile(f"broken PDF page tree ({describe(exc)})") from None
    if not pages:
        raise UnreadableFile("PDF has no pages")
    texts: list[str] = []
    failed: list[int] = []
    first_error = ""
    empty = 0
    for number, page in enumerate(pages, 1):
        try:
            page_text = page.extract_text() or ""
        except Exception as exc:
            failed.append(number)
            first_error = first_error or describe(exc)
            continue
        page_text = page_text.strip()
        if page_text:
            texts.append(page_text.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            empty += 1
    if not texts:
        if failed:
            raise UnreadableFile(f"PDF text extraction failed ({first_error})")
        raise UnreadableFile("PDF has no extractable text (scanned or image-only?)")
    notes = []
    if failed:
        listed = ", ".join(map(str, failed[:10])) + (" …" if len(failed) > 10 else "")
        notes.append(f"text extraction failed on page(s) {listed} ({first_error})")
    if empty:
        notes.append(f"{empty} of {len(pages)} page(s) have no extractable text")
    return "\n\n".join(texts), tuple(notes)
