"""DOCX to text, model-free and safe: the zip and its XML read with hard limits.

:func:`parse_docx` reads the main document part with defusedxml (any DTD,
entity or external reference is refused, never expanded), every part bounded
to :data:`DOCX_MAX_XML_BYTES` decompressed (zip bombs); paragraphs and tables
become text, headings ``#`` lines (by style id, name or outline level, parsing
``word/styles.xml`` only when a style id does not say), list items ``- ``
lines. :func:`check_docx_package` applies the same refusals to a whole package
before a third-party DOCX parser (the unstructured path) sees it.

It runs in the parser worker, which loads this file by path: standard library
and :mod:`milvus_rag.loaders.parser_base` only; defusedxml is imported when a
file is parsed.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from milvus_rag.loaders.parser_base import UnreadableFile, describe, one_line

__all__ = ["DOCX_MAX_XML_BYTES", "check_docx_package", "parse_docx"]

DOCX_MAX_XML_BYTES = 50 * 1000 * 1000  # one decompressed XML part of a DOCX
_DOCX_MAX_MEMBERS = 10_000
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_RUN_SKIP = frozenset({_W + "pPr", _W + "rPr", _W + "del", _W + "moveFrom", _W + "instrText"})
_HEADING_NAME = re.compile(r"heading\s*([1-9])", re.IGNORECASE)


def _open_docx(data: bytes) -> zipfile.ZipFile:
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise UnreadableFile("not a DOCX: legacy .doc or password-protected document")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnreadableFile(f"not a DOCX (not a valid zip archive: {one_line(exc)})") from None
    if len(archive.infolist()) > _DOCX_MAX_MEMBERS:
        raise UnreadableFile(f"refused: DOCX holds more than {_DOCX_MAX_MEMBERS} parts")
    return archive


def _read_part(archive: zipfile.ZipFile, part: str, limit: int = DOCX_MAX_XML_BYTES) -> bytes:
    """A zip member's bytes, refusing any that decompresses beyond ``limit``."""
    too_big = UnreadableFile(
        f"refused: {part} decompresses beyond {limit // 1_000_000} MB (zip bomb?)"
    )
    try:
        info = archive.getinfo(part)
    except KeyError:
        raise UnreadableFile(f"not a DOCX ({part} missing)") from None
    if info.file_size > limit:
        raise too_big
    try:
        with archive.open(info) as member:
            blob = member.read(limit + 1)
    except Exception as exc:
        raise UnreadableFile(f"corrupt DOCX part {part} ({describe(exc)})") from None
    if len(blob) > limit:
        raise too_big
    return blob


def _safe_xml(blob: bytes, part: str) -> Any:
    """Parse with defusedxml: any DTD, entity or external reference is refused, never expanded."""
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    try:
        return SafeET.fromstring(blob, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise UnreadableFile(
            f"refused: {part} declares a DTD or entities (possible XXE or entity-expansion attack)"
        ) from None
    except SafeET.ParseError as exc:
        raise UnreadableFile(f"malformed XML in {part} ({one_line(exc)})") from None


def _main_part(archive: zipfile.ZipFile) -> str:
    """The main document part named by _rels/.rels (almost always word/document.xml)."""
    if "_rels/.rels" in archive.NameToInfo:
        rels = _safe_xml(_read_part(archive, "_rels/.rels"), "_rels/.rels")
        for rel in rels.iter(_PKG_REL + "Relationship"):
            if (rel.get("Type") or "").endswith("/officeDocument") and rel.get("Target"):
                target = rel.get("Target", "").lstrip("/")
                if target in archive.NameToInfo:
                    return str(target)
    return "word/document.xml"


def _style_id_decides(style_id: str) -> bool:
    """Whether a style id alone tells heading / list / plain (built-in English ids)."""
    lowered = style_id.lower()
    return bool(
        _HEADING_NAME.fullmatch(style_id)
        or lowered in ("title", "normal", "")
        or lowered.startswith("list")
    )


def _docx_styles(archive: zipfile.ZipFile, *, parse: bool) -> dict[str, tuple[str, int | None]]:
    """styleId -> (style name, outline level) from word/styles.xml, if present.

    Parsing a real styles.xml (hundreds of KB) dominates the cost of a small
    DOCX, so it is parsed only when a style id used by the document is not
    self-describing; it is always checked for a DTD.
    """
    if "word/styles.xml" not in archive.NameToInfo:
        return {}
    blob = _read_part(archive, "word/styles.xml")
    if not parse:
        if b"<!DOCTYPE" in blob:
            _safe_xml(blob, "word/styles.xml")  # raises the refusal
        return {}
    root = _safe_xml(blob, "word/styles.xml")
    styles: dict[str, tuple[str, int | None]] = {}
    for style in root.iter(_W + "style"):
        style_id = style.get(_W + "styleId")
        if not style_id:
            continue
        name_el = style.find(_W + "name")
        name = (name_el.get(_W + "val") if name_el is not None else None) or style_id
        outline = style.find(f"{_W}pPr/{_W}outlineLvl")
        styles[style_id] = (
            name,
            _int_or_none(outline.get(_W + "val")) if outline is not None else None,
        )
    return styles


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _paragraph_text(paragraph: Any) -> str:
    parts: list[str] = []
    stack = [paragraph]
    while stack:
        element = stack.pop()
        tag = element.tag
        if tag == _W + "t":
            parts.append(element.text or "")
        elif tag == _W + "tab":
            parts.append("\t")
        elif tag in (_W + "br", _W + "cr"):
            parts.append("\n")
        elif tag == _W + "noBreakHyphen":
            parts.append("-")
        stack.extend(reversed([c for c in element if c.tag not in _RUN_SKIP]))
    return "".join(parts).strip()


def _paragraph_prefix(paragraph: Any, styles: dict[str, tuple[str, int | None]]) -> str:
    props = paragraph.find(_W + "pPr")
    if props is None:
        return ""
    style_el = props.find(_W + "pStyle")
    style_id = style_el.get(_W + "val", "") if style_el is not None else ""
    name, style_outline = styles.get(style_id, (style_id, None))
    outline_el = props.find(_W + "outlineLvl")
    outline = _int_or_none(outline_el.get(_W + "val")) if outline_el is not None else None
    if outline is None:
        outline = style_outline
    match = _HEADING_NAME.fullmatch(name.strip()) or _HEADING_NAME.fullmatch(style_id)
    if match:
        return "#" * min(int(match.group(1)), 6) + " "
    if name.strip().lower() == "title":
        return "# "
    if outline is not None and 0 <= outline <= 5:
        return "#" * (outline + 1) + " "
    if props.find(_W + "numPr") is not None or name.lower().startswith("list"):
        return "- "
    return ""


def _docx_blocks(container: Any, styles: dict[str, tuple[str, int | None]]) -> Iterator[str]:
    for child in container:
        tag = child.tag
        if tag == _W + "p":
            text = _paragraph_text(child)
            if text:
                yield _paragraph_prefix(child, styles) + text
        elif tag == _W + "tbl":
            rows = []
            for row in child.findall(_W + "tr"):
                cells = [
                    " ".join(t for t in (_paragraph_text(p) for p in cell.iter(_W + "p")) if t)
                    for cell in row.findall(_W + "tc")
                ]
                if any(cells):
                    rows.append(" | ".join(cells))
            if rows:
                yield "\n".join(rows)
        elif tag == _W + "sdt":
            content = child.find(_W + "sdtContent")
            if content is not None:
                yield from _docx_blocks(content, styles)


def parse_docx(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Paragraphs and tables of word/document.xml, parsed with defusedxml; headings as '#'."""
    archive = _open_docx(data)
    part = _main_part(archive)
    root = _safe_xml(_read_part(archive, part), part)
    used = {el.get(_W + "val", "") for el in root.iter(_W + "pStyle")}
    styles = _docx_styles(archive, parse=not all(map(_style_id_decides, used)))
    body = root.find(_W + "body")
    if body is None:
        raise UnreadableFile(f"not a DOCX ({part} has no body)")
    text = "\n\n".join(_docx_blocks(body, styles))
    if not text.strip():
        raise UnreadableFile("DOCX has no text")
    return text, ()


def check_docx_package(data: bytes) -> None:
    """Before a third-party DOCX parser: bounded sizes and no DTD in any XML part."""
    archive = _open_docx(data)
    for info in archive.infolist():
        if not info.filename.endswith((".xml", ".rels")):
            continue
        blob = _read_part(archive, info.filename)
        if blob.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            found = "<!DOCTYPE" in blob.decode("utf-16", "replace")
        else:
            found = b"<!DOCTYPE" in blob
        if found:
            raise UnreadableFile(
                f"refused: {info.filename} declares a DTD (possible XXE or entity-expansion attack)"
            )
    _safe_xml(_read_part(archive, _main_part(archive)), "main document")
