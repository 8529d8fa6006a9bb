"""Turn one file's bytes into text, choosing the parser by file type, safely and offline.

::

    parsed = parse_file("guide.pdf", data, parse_timeout=60)
    parsed.text, parsed.format, parsed.warnings

Markdown and plain text are decoded in this process. PDF and DOCX (and anything
handed to ``unstructured``) are parsed in a sandbox worker process: a fresh
interpreter (never a fork of this possibly multi-threaded process) that runs
with network access disabled, is reused across files, and is killed when a
parse exceeds ``parse_timeout``. Only plain bytes and JSON cross the process
boundary, so a compromised worker cannot make this process unpickle anything.

Every failure caused by the input becomes :class:`UnreadableFile` whose
``str()`` is a one-line reason; the caller skips the file and reports it.

``unstructured`` is optional. Version 0.27 loads the spaCy model
``en_core_web_sm`` on its first partition and, if the model package is not
installed, downloads it from GitHub (``unstructured.nlp.tokenize``); it also
pings a telemetry endpoint when imported unless ``DO_NOT_TRACK`` is set. So
:func:`unstructured_status` decides *without importing unstructured* (only
import-system look-ups) whether it can run offline, and the worker opts out of
telemetry, replaces the model installer with a refusal and blocks sockets.

This module knows nothing of Milvus, LLMs or settings. The worker loads this
file and ``milvus_rag/errors.py`` by path, so keep its imports to the standard
library and the parser packages (imported lazily).
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any

from milvus_rag.errors import SourceError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ParsedFile",
    "UnreadableFile",
    "format_of",
    "parse_file",
    "unstructured_status",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedFile:
    """The text of one file and how it was obtained."""

    text: str
    format: str  # "markdown" | "text" | "html" | "pdf" | "docx"
    warnings: tuple[str, ...] = ()


class UnreadableFile(SourceError):
    """The file cannot be turned into text; ``str(exc)`` is the one-line reason."""


class _ParserFailure(UnreadableFile):
    """The parser itself broke (unexpected exception or crash), not a verdict on the file."""


class _ParserTimeout(UnreadableFile):
    """The parser ran past ``parse_timeout`` and its worker was killed."""


# Parsers take the file's bytes and return (text, warnings).
Parser = Callable[[bytes], "tuple[str, tuple[str, ...]]"]

_SUFFIX_FORMATS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "text",
    ".rst": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_FORMATS)

# Formats whose parser runs in the sandbox worker (binary / XML containers).
_WORKER_FORMATS = frozenset({"pdf", "docx"})

DOCX_MAX_XML_BYTES = 50 * 1000 * 1000  # one decompressed XML part of a DOCX
_DOCX_MAX_MEMBERS = 10_000
_SNIFF_BYTES = 8192
_BINARY_CONTROL_RATIO = 0.30
_MAX_REASON = 300


def format_of(name: str) -> str | None:
    """The format of a file by its suffix (case-insensitive); None when unsupported."""
    return _SUFFIX_FORMATS.get(PurePath(name).suffix.lower())


def _one_line(message: object, limit: int = _MAX_REASON) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    detail = _one_line(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------- text


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"


def _looks_binary(data: bytes) -> bool:
    """NUL bytes or more than 30% control characters in the first 8 KiB."""
    sample = data[:_SNIFF_BYTES]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > _BINARY_CONTROL_RATIO * len(sample)


_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode_text(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Decode a text file: UTF-8 (BOM stripped), UTF-16/32 with BOM, else cp1252/latin-1."""
    notes: tuple[str, ...] = ()
    for bom, codec in _UNICODE_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise UnreadableFile(f"invalid {codec.upper()} text: {exc.reason}") from None
            break
    else:
        if _looks_binary(data):
            raise UnreadableFile("binary content")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, encoding = data.decode("latin-1"), "latin-1"
            notes = (f"not UTF-8; decoded as {encoding}",)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text or text.isspace():
        raise UnreadableFile("empty file")
    return text, notes


def _parse_text(data: bytes) -> tuple[str, tuple[str, ...]]:
    return _decode_text(data)


# --------------------------------------------------------------------------- html

_HTML_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "iframe",
    "object",
    "embed",
    "svg",
    "canvas",
)
_HTML_BLOCKS = (
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy_lines(text: str) -> str:
    lines = []
    for raw in text.split("\n"):
        line = raw.strip()
        if line.strip("#- ") == "" and line:
            continue  # a heading or list marker left without text
        lines.append(line)
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _parse_html(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Model-free HTML text: no scripts or styles, headings as '#' lines, never fetches."""
    from bs4 import BeautifulSoup, NavigableString
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction, Tag

    if _looks_binary(data):
        raise UnreadableFile("binary content")
    soup = BeautifulSoup(data, "html.parser")
    notes: tuple[str, ...] = ()
    if getattr(soup, "contains_replacement_characters", False):
        notes = ("some characters could not be decoded and were replaced",)

    for tag in soup.find_all(list(_HTML_DROP)):
        if not getattr(tag, "decomposed", False):
            tag.decompose()
    for node in list(soup.descendants):
        if not isinstance(node, NavigableString):
            continue
        if isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            node.extract()
        elif node.find_parent("pre") is None:
            node.replace_with(" ".join(node.split()) if not node.isspace() else " ")
    for row in soup.find_all("tr"):
        if not isinstance(row, Tag) or getattr(row, "decomposed", False):
            continue
        cells = [c.get_text(" ", strip=True) for c in row.find_all(["td", "th"], recursive=False)]
        row.replace_with(" | ".join(c for c in cells if c) + "\n")
    for tag in soup.find_all(True):
        name = tag.name
        if name in _HEADINGS:
            tag.insert_before("\n\n" + "#" * _HEADINGS[name] + " ")
            tag.insert_after("\n\n")
        elif name == "li":
            tag.insert_before("\n- ")
        elif name == "br":
            tag.replace_with("\n")
        elif name in _HTML_BLOCKS:
            tag.insert_before("\n\n")
            tag.insert_after("\n\n")
    text = _tidy_lines(soup.get_text())
    if not text:
        raise UnreadableFile("no text content")
    return text, notes


# --------------------------------------------------------------------------- pdf


def _parse_pdf(data: bytes) -> tuple[str, tuple[str, ...]]:
    """pypdf text, page by page, joined with blank lines."""
    import pypdf

    if not data.strip():
        raise UnreadableFile("empty file")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise UnreadableFile(f"not a readable PDF ({_describe(exc)})") from None
    if encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:
            raise UnreadableFile(
                f"encrypted PDF that cannot be opened ({_describe(exc)})"
            ) from None
        if not opened:
            raise UnreadableFile("encrypted PDF (password required)")
    try:
        pages = list(reader.pages)
    except Exception as exc:
        raise UnreadableFile(f"broken PDF page tree ({_describe(exc)})") from None
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
            first_error = first_error or _describe(exc)
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


# --------------------------------------------------------------------------- docx

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
        raise UnreadableFile(f"not a DOCX (not a valid zip archive: {_one_line(exc)})") from None
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
        raise UnreadableFile(f"corrupt DOCX part {part} ({_describe(exc)})") from None
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
        raise UnreadableFile(f"malformed XML in {part} ({_one_line(exc)})") from None


def _main_part(archive: zipfile.ZipFile) -> str:
    """The main document part named by _rels/.rels (almost always word/document.xml)."""
    if "_rels/.rels" in archive.NameToInfo:
        rels = _safe_xml(_read_part(archive, "_rels/.rels"), "_rels/.rels")
        for rel in rels.iter(_PKG_REL + "Relationship"):
            if (rel.get("Type") or "").endswith("/officeDocument") and rel.get("Target"):
                target = rel.get("Target", "").lstrip("/")
                if target in archive.NameToInfo:
                    return target
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


def _parse_docx(data: bytes) -> tuple[str, tuple[str, ...]]:
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


def _check_docx_package(data: bytes) -> None:
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


# --------------------------------------------------------------------------- unstructured

_SPACY_MODEL = "en_core_web_sm"
_NLTK_RESOURCES = ("tokenizers/punkt_tab", "taggers/averaged_perceptron_tagger_eng")
_UNSTRUCTURED_PDF_MODULES = ("pdfminer", "pi_heif", "PIL", "unstructured_inference")

# Set in the worker's environment (never in this process): opt out of unstructured's
# import-time and per-partition telemetry, its usage banner, and NLTK auto-download
# (unstructured < 0.2x); keep Hugging Face libraries offline.
_WORKER_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "AUTO_DOWNLOAD_NLTK": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _nltk_data_dirs() -> list[Path]:
    dirs: list[Path] = []
    with contextlib.suppress(RuntimeError):
        dirs.append(Path.home() / "nltk_data")
    prefix = Path(sys.prefix)
    dirs += [prefix / "nltk_data", prefix / "share" / "nltk_data", prefix / "lib" / "nltk_data"]
    dirs += [Path(p) for p in ("/usr/share", "/usr/local/share", "/usr/lib", "/usr/local/lib")]
    return [d if d.name == "nltk_data" else d / "nltk_data" for d in dirs]


def _nltk_resource_present(resource: str) -> bool:
    for base in _nltk_data_dirs():
        path = base / resource
        if path.is_dir() or path.with_suffix(".zip").is_file():
            return True
    return False


@functools.lru_cache(maxsize=1)
def unstructured_status() -> tuple[bool, str]:
    """Whether unstructured can partition HTML/DOCX here, offline, and why.

    Uses only import-system and file look-ups: unstructured itself is never
    imported here (its import pings a telemetry endpoint), nothing is
    downloaded and no socket is opened. Cached for the process.
    """
    try:
        spec = importlib.util.find_spec("unstructured")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return False, "unstructured is not installed (optional extra: milvus-rag[unstructured])"
    try:
        version = importlib.metadata.version("unstructured")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    tokenize = Path(next(iter(spec.submodule_search_locations))) / "nlp" / "tokenize.py"
    try:
        source = tokenize.read_text(encoding="utf-8")
    except OSError:
        return False, f"unstructured {version}: cannot inspect its NLP loader ({tokenize})"
    if "spacy" in source:
        match = re.search(r"_SPACY_MODEL_NAME\b[^=\n]*=\s*[\"']([\w.-]+)[\"']", source)
        model = match.group(1) if match else _SPACY_MODEL
        if not _installed("spacy"):
            return False, f"unstructured {version} needs spaCy, which is not installed"
        try:
            importlib.metadata.distribution(model)
            model_found = _installed(model)
        except importlib.metadata.PackageNotFoundError:
            model_found = False
        if not model_found:
            return False, (
                f"the spaCy model package '{model}' is not installed; unstructured {version} "
                "would download it from GitHub on its first partition (fails offline)"
            )
        return True, f"unstructured {version} with spaCy model '{model}' installed"
    if "nltk" in source:
        if not _installed("nltk"):
            return False, f"unstructured {version} needs nltk, which is not installed"
        missing = [r for r in _NLTK_RESOURCES if not _nltk_resource_present(r)]
        if missing:
            return False, (
                f"NLTK data {', '.join(missing)} not found; unstructured {version} "
                "would download it on first use (fails offline)"
            )
        return True, f"unstructured {version} with NLTK data installed"
    return False, f"unstructured {version}: unrecognised NLP loader, cannot verify offline use"


def _unstructured_blocked_download(*args: object, **kwargs: object) -> None:
    raise RuntimeError(
        f"unstructured tried to download the spaCy model '{_SPACY_MODEL}'; "
        "downloads are disabled in the parser worker"
    )


def _prepare_unstructured() -> None:
    """In the worker: opt out of telemetry and make model downloads fail at once."""
    for key, value in _WORKER_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from unstructured.nlp import tokenize
    except ImportError:
        return
    for attr in ("_install_spacy_model", "download_nltk_packages"):
        if hasattr(tokenize, attr):
            setattr(tokenize, attr, _unstructured_blocked_download)


def _elements_to_text(elements: list[Any]) -> str:
    parts = []
    for element in elements:
        text = (getattr(element, "text", "") or "").strip()
        category = getattr(element, "category", "")
        if not text or category == "PageBreak":
            continue
        if category == "Title":
            depth = getattr(getattr(element, "metadata", None), "category_depth", None)
            level = min(depth + 1, 6) if isinstance(depth, int) and depth >= 0 else 1
            parts.append("#" * level + " " + text)
        elif category == "ListItem":
            parts.append("- " + text)
        elif category == "Table":
            parts.append(_table_text(element, text))
        else:
            parts.append(text)
    return "\n\n".join(parts)


def _table_text(element: Any, fallback: str) -> str:
    """Rows as 'a | b' lines from unstructured's text_as_html, else its flat text."""
    markup = getattr(getattr(element, "metadata", None), "text_as_html", None)
    if not markup:
        return fallback
    try:
        return _parse_html(str(markup).encode("utf-8"))[0]
    except UnreadableFile:
        return fallback


def _finish_unstructured(elements: list[Any]) -> tuple[str, tuple[str, ...]]:
    text = _elements_to_text(elements)
    if not text:
        raise UnreadableFile("no text content")
    return text, ()


def _unstructured_html(data: bytes) -> tuple[str, tuple[str, ...]]:
    if _looks_binary(data):
        raise UnreadableFile("binary content")
    _prepare_unstructured()
    from unstructured.partition.html import partition_html

    return _finish_unstructured(partition_html(file=io.BytesIO(data)))


def _unstructured_docx(data: bytes) -> tuple[str, tuple[str, ...]]:
    _check_docx_package(data)
    _prepare_unstructured()
    from unstructured.partition.docx import partition_docx

    return _finish_unstructured(partition_docx(file=io.BytesIO(data)))


def _unstructured_pdf(data: bytes) -> tuple[str, tuple[str, ...]]:
    _prepare_unstructured()
    from unstructured.partition.pdf import partition_pdf

    return _finish_unstructured(partition_pdf(file=io.BytesIO(data), strategy="fast"))


# Internal hooks: format -> parser. A parser that runs in the worker must be a
# module-level function (the worker imports it by module and qualified name).
_BUILTIN_PARSERS: dict[str, Parser] = {
    "markdown": _parse_text,
    "text": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
}
_UNSTRUCTURED_PARSERS: dict[str, Parser] = {
    "html": _unstructured_html,
    "docx": _unstructured_docx,
    "pdf": _unstructured_pdf,
}

_fallback_noted = False
_fallback_lock = threading.Lock()


def _note_fallback_once(reason: str) -> None:
    global _fallback_noted
    with _fallback_lock:
        if _fallback_noted:
            return
        _fallback_noted = True
    installed = _installed("unstructured")
    logger.log(
        logging.WARNING if installed else logging.INFO,
        "unstructured is not usable offline (%s); HTML, DOCX and PDF are parsed with the "
        "built-in model-free parsers (BeautifulSoup, defusedxml, pypdf). To use unstructured, "
        "install the spaCy model package '%s' into this environment from a local wheel "
        "(e.g. pip install ./en_core_web_sm-3.8.0-py3-none-any.whl, or "
        "`python -m spacy download %s` on a connected machine).",
        reason,
        _SPACY_MODEL,
        _SPACY_MODEL,
    )


def _use_unstructured(fmt: str, requested: bool | None) -> bool:
    """Decide the parser; raises UnreadableFile when unstructured is forced but cannot run."""
    if requested is False or fmt not in _UNSTRUCTURED_PARSERS:
        return False
    usable, reason = unstructured_status()
    if not usable:
        if requested:
            raise UnreadableFile(f"unstructured cannot run offline: {reason}")
        _note_fallback_once(reason)
        return False
    missing: list[str] = []
    if fmt == "docx":
        missing = [] if _installed("docx") else ["python-docx"]
    elif fmt == "pdf":
        missing = [m for m in _UNSTRUCTURED_PDF_MODULES if not _installed(m)]
    if missing:
        if requested:
            raise UnreadableFile(
                f"unstructured cannot parse {fmt} here: missing {', '.join(missing)}"
            )
        logger.debug("unstructured %s extra missing (%s); using built-in parser", fmt, missing)
        return False
    return True


# --------------------------------------------------------------------------- public entry


def parse_file(
    name: str,
    data: bytes,
    *,
    parse_timeout: float = 60.0,
    use_unstructured: bool | None = None,
) -> ParsedFile:
    """Text of one file, the parser chosen by ``name``'s suffix.

    ``parse_timeout`` bounds parsers that run in the worker process (PDF, DOCX,
    anything through unstructured). ``use_unstructured``: None = use it for
    HTML/DOCX (PDF only with its pdf extra) when :func:`unstructured_status`
    says it can run offline, else the built-in parsers; False = always the
    built-in parsers; True = unstructured or :class:`UnreadableFile`.
    """
    fmt = format_of(name)
    if fmt is None:
        suffix = PurePath(name).suffix
        raise UnreadableFile(f"unsupported file type {suffix!r}" if suffix else "no file suffix")
    if not parse_timeout > 0:
        raise ValueError(f"parse_timeout must be > 0, got {parse_timeout!r}")
    if not data:
        raise UnreadableFile("empty file")
    notes: tuple[str, ...] = ()
    if _use_unstructured(fmt, use_unstructured):
        try:
            text, found = _run_in_worker(_UNSTRUCTURED_PARSERS[fmt], data, parse_timeout)
            return ParsedFile(text, fmt, found)
        except _ParserFailure as exc:
            if use_unstructured:
                raise UnreadableFile(f"unstructured failed: {exc}") from None
            notes = (_one_line(f"unstructured failed ({exc}); used the built-in parser"),)
    parser = _BUILTIN_PARSERS[fmt]
    if fmt in _WORKER_FORMATS:
        text, found = _run_in_worker(parser, data, parse_timeout)
    else:
        try:
            text, found = parser(data)
        except UnreadableFile:
            raise
        except Exception as exc:
            raise UnreadableFile(f"{fmt} parser failed: {_describe(exc)}") from exc
    return ParsedFile(text, fmt, notes + tuple(found))


# --------------------------------------------------------------------------- worker process
#
# Protocol over the worker's stdin/stdout, each frame an 8-byte big-endian length
# and a payload. Parent -> worker: one JSON init frame, then per job a JSON header
# ({"module", "qualname"}) and the raw file bytes. Worker -> parent: a JSON ready
# frame, then per job a JSON reply ({"ok", "warnings"} or {"ok", "kind", "error"})
# and, when ok, the UTF-8 text. No pickles, in either direction.

_STARTUP_TIMEOUT = 60.0
_MAX_JOBS_PER_WORKER = 500
_MAX_META_FRAME = 1 << 20
_MAX_WORKER_NOTES = 5

_BOOTSTRAP = """\
import importlib, importlib.util, json, os, sys
_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
_in = sys.stdin.buffer
_init = json.loads(_in.read(int.from_bytes(_in.read(8), "big")))
sys.path[:] = _init["path"]
for _name, _file in _init["modules"]:
    if _file:
        _spec = importlib.util.spec_from_file_location(_name, _file)
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _mod
        _spec.loader.exec_module(_mod)
    else:
        _mod = importlib.import_module(_name)
_mod._worker_main(_in, _out)
"""


def _send_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(len(payload).to_bytes(8, "big"))
    stream.write(payload)


def _recv_frame(stream: IO[bytes], limit: int | None = None) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "big")
    if limit is not None and size > limit:
        raise EOFError(f"oversized frame ({size} bytes)")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def _worker_modules() -> list[tuple[str, str | None]]:
    """(module name, file) for the worker to load: errors first, then this module."""
    names = [SourceError.__module__, __name__]
    return [(n, getattr(sys.modules.get(n), "__file__", None)) for n in names]


def _reference(parser: Callable[..., Any]) -> tuple[str, str]:
    module = getattr(parser, "__module__", None)
    qualname = getattr(parser, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"worker parsers must be module-level functions, got {parser!r}")
    return module, qualname


def _resolve(module: str, qualname: str) -> Callable[[bytes], Any]:
    target: Any = sys.modules.get(module) or importlib.import_module(module)
    for attr in qualname.split("."):
        target = getattr(target, attr)
    return target  # type: ignore[no-any-return]


def _block_network() -> None:
    """Worker only: no DNS and no TCP/UDP connections from any Python code."""
    import socket

    def refuse(*args: object, **kwargs: object) -> Any:
        raise OSError("network access is disabled in the parser worker")

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: Any, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        real_connect(self, address)

    def connect_ex(self: Any, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = refuse
    socket.gethostbyname = refuse
    socket.gethostbyname_ex = refuse
    socket.create_connection = refuse


class _NoteCollector(logging.Handler):
    """Worker only: keeps the first few distinct library warnings of the current job."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            note = _one_line(f"{record.name.split('.')[0]}: {record.getMessage()}", 200)
        except Exception:
            return
        if note not in self.notes and len(self.notes) < _MAX_WORKER_NOTES:
            self.notes.append(note)


def _watch_parent(parent: int) -> None:
    import time

    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os._exit(3)


def _worker_main(inp: IO[bytes], out: IO[bytes]) -> None:
    """Worker entry point (run by _BOOTSTRAP in a fresh interpreter)."""
    if hasattr(os, "getppid"):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    for key, value in _WORKER_ENV.items():
        os.environ[key] = value
    _block_network()
    collector = _NoteCollector()
    logging.getLogger().addHandler(collector)
    for warm in ("pypdf", "defusedxml.ElementTree"):
        with contextlib.suppress(ImportError):
            importlib.import_module(warm)
    _send_frame(out, b'{"ready": true}')
    out.flush()
    while True:
        header = _recv_frame(inp)
        data = _recv_frame(inp) if header is not None else None
        if header is None or data is None:
            return
        collector.notes = []
        body = b""
        try:
            request = json.loads(header)
            parser = _resolve(request["module"], request["qualname"])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                text, notes = parser(data)
            extra = [f"{w.category.__name__}: {w.message}" for w in caught[:_MAX_WORKER_NOTES]]
            all_notes = list(dict.fromkeys([*notes, *collector.notes, *map(_one_line, extra)]))
            reply: dict[str, Any] = {"ok": True, "warnings": all_notes[: 2 * _MAX_WORKER_NOTES]}
            body = str(text).encode("utf-8", "replace")
            del text
        except UnreadableFile as exc:
            reply = {"ok": False, "kind": "unreadable", "error": _one_line(exc)}
        except MemoryError:
            reply = {"ok": False, "kind": "failure", "error": "out of memory while parsing"}
        except RecursionError:
            reply = {"ok": False, "kind": "unreadable", "error": "document nested too deeply"}
        except Exception as exc:
            reply = {"ok": False, "kind": "failure", "error": _describe(exc)}
        del data
        _send_frame(out, json.dumps(reply).encode("utf-8"))
        if reply["ok"]:
            _send_frame(out, body)
        out.flush()
        del body


class _WorkerGone(Exception):
    pass


def _run_with_deadline(action: Callable[[], Any], timeout: float | None) -> tuple[bool, Any]:
    """Run ``action`` in a helper thread; (finished?, result). Re-raises its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = action()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="parser-worker-io", daemon=True)
    thread.start()
    thread.join(None if timeout is None else min(timeout, threading.TIMEOUT_MAX))
    if thread.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")


class _Worker:
    """One sandbox interpreter, reused across jobs until it times out, crashes or ages."""

    def __init__(self) -> None:
        self.jobs = 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        extra: dict[str, Any] = {}
        if os.name == "posix":
            extra["start_new_session"] = True
        elif hasattr(subprocess, "CREATE_NEW_PROCESS_GROUP"):
            extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                close_fds=True,
                **extra,
            )
        except OSError as exc:
            self._stderr.close()
            raise _ParserFailure(f"cannot start the parser worker ({_describe(exc)})") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        paths = [p for p in sys.path if isinstance(p, str)]
        init = json.dumps({"path": paths, "modules": _worker_modules()}).encode()

        def handshake() -> bytes | None:
            _send_frame(self._in, init)
            self._in.flush()
            return _recv_frame(self._out, _MAX_META_FRAME)

        try:
            finished, ready = _run_with_deadline(handshake, _STARTUP_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        if not finished or ready is None:
            reason = self._death_reason() if finished else "did not start in time"
            self.kill()
            raise _ParserFailure(f"parser worker failed to start: {reason}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, module: str, qualname: str, data: bytes, timeout: float) -> dict[str, Any]:
        header = json.dumps({"module": module, "qualname": qualname}).encode()

        def exchange() -> dict[str, Any]:
            _send_frame(self._in, header)
            _send_frame(self._in, data)
            self._in.flush()
            meta = _recv_frame(self._out, _MAX_META_FRAME)
            if meta is None:
                raise _WorkerGone()
            reply: dict[str, Any] = json.loads(meta)
            if reply.get("ok"):
                body = _recv_frame(self._out)
                if body is None:
                    raise _WorkerGone()
                reply["text"] = body.decode("utf-8", "replace")
            return reply

        self.jobs += 1
        try:
            finished, reply = _run_with_deadline(exchange, timeout)
        except (_WorkerGone, OSError, EOFError, ValueError):
            reason = self._death_reason()
            self.kill()
            raise _ParserFailure(f"parser process crashed ({reason})") from None
        except BaseException:
            self.kill()
            raise
        if not finished:
            self.kill()
            raise _ParserTimeout(f"parser timed out after {timeout:g} s")
        return reply  # type: ignore[no-any-return]

    def _death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "protocol error"
        if code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
            reason = f"killed by {what}" + (" - out of memory?" if what == "SIGKILL" else "")
        else:
            reason = f"exit code {code}"
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 2000))
            tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            tail = []
        return f"{reason}: {_one_line(tail[-1], 200)}" if tail else reason

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self._in, self._out, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def close(self) -> None:
        """Polite stop: EOF on stdin ends the worker's loop; kill if it lingers."""
        with contextlib.suppress(OSError, ValueError):
            self._in.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


_pool_lock = threading.Lock()
_idle: list[_Worker] = []
_workers: set[_Worker] = set()


def _max_idle() -> int:
    return max(2, os.cpu_count() or 2)


def _acquire_worker() -> _Worker:
    with _pool_lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive:
                return worker
            _workers.discard(worker)
            worker.kill()
    worker = _Worker()
    with _pool_lock:
        _workers.add(worker)
    return worker


def _release_worker(worker: _Worker) -> None:
    with _pool_lock:
        keep = worker.alive and worker.jobs < _MAX_JOBS_PER_WORKER and len(_idle) < _max_idle()
        if keep:
            _idle.append(worker)
            return
        _workers.discard(worker)
    worker.close()


def _discard_worker(worker: _Worker) -> None:
    with _pool_lock:
        _workers.discard(worker)
    worker.kill()


def _shutdown_workers() -> None:
    """Stop every worker this process started (also run at exit)."""
    with _pool_lock:
        workers = list(_workers)
        _workers.clear()
        _idle.clear()
    for worker in workers:
        worker.close()


def _forget_workers_after_fork() -> None:
    # A forked child must not talk to its parent's workers (their pipes are shared).
    global _pool_lock
    _pool_lock = threading.Lock()
    _idle.clear()
    _workers.clear()


atexit.register(_shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _run_in_worker(parser: Parser, data: bytes, timeout: float) -> tuple[str, tuple[str, ...]]:
    """Run ``parser(data)`` in a sandbox worker; UnreadableFile on failure or timeout."""
    module, qualname = _reference(parser)
    worker = _acquire_worker()
    try:
        reply = worker.run(module, qualname, data, timeout)
    except BaseException:
        _discard_worker(worker)
        raise
    _release_worker(worker)
    if not reply.get("ok"):
        error = _one_line(reply.get("error") or "unknown parser error")
        if reply.get("kind") == "unreadable":
            raise UnreadableFile(error)
        raise _ParserFailure(f"parser failed: {error}")
    notes = tuple(_one_line(n) for n in reply.get("warnings") or ())
    return reply["text"], notes
