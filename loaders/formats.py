"""Turn one file's bytes into text, choosing the parser by file type, safely and offline.

::

    parsed = parse_file("guide.pdf", data, parse_timeout=60)
    parsed.text, parsed.format, parsed.warnings

This module is the public entry, the table of formats and the dispatch:
:data:`FORMATS` has one row per format (suffixes, HTTP Content-Types, parser, whether
it runs in the worker, its unstructured parser), and every other list of formats is
derived from it; :func:`format_of` maps a suffix to a format, :func:`parse_file`
picks that format's parser and where it runs. Markdown and plain text (:mod:`~milvus_rag.loaders.text_parser`) and HTML
(:mod:`~milvus_rag.loaders.html_parser`) are parsed in this process; PDF
(:mod:`~milvus_rag.loaders.pdf_parser`) and DOCX
(:mod:`~milvus_rag.loaders.docx_parser`), and anything handed to the optional
``unstructured`` (:mod:`~milvus_rag.loaders.unstructured_parsers`), are parsed
in a sandbox worker process (:mod:`~milvus_rag.loaders.parser_worker`) that
runs with network access disabled, is reused across files, and is killed when a
parse exceeds ``parse_timeout``.

Every failure caused by the input becomes :class:`UnreadableFile` whose
``str()`` is a one-line reason; the caller skips the file and reports it.

``unstructured`` is used only when :func:`unstructured_status` says it can run
offline (it decides without importing unstructured); otherwise the built-in
model-free parsers are used, and the first such fallback is logged once.

This module knows nothing of Milvus, LLMs or settings.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import PurePath

from milvus_rag.loaders.docx_parser import DOCX_MAX_XML_BYTES as DOCX_MAX_XML_BYTES
from milvus_rag.loaders.docx_parser import check_docx_package, parse_docx
from milvus_rag.loaders.html_parser import parse_html
from milvus_rag.loaders.parser_base import Parser, UnreadableFile, describe, one_line
from milvus_rag.loaders.parser_worker import _ParserFailure, run_in_worker, shutdown_workers
from milvus_rag.loaders.parser_worker import _workers as _workers
from milvus_rag.loaders.pdf_parser import parse_pdf
from milvus_rag.loaders.text_parser import parse_text
from milvus_rag.loaders.unstructured_parsers import (
    SPACY_MODEL,
    UNSTRUCTURED_PDF_MODULES,
    unstructured_docx,
    unstructured_html,
    unstructured_pdf,
    unstructured_status,
)
from milvus_rag.loaders.unstructured_parsers import installed as _installed

__all__ = [
    "CONTENT_TYPE_SUFFIXES",
    "FORMATS",
    "PARSER_MODULES",
    "SUPPORTED_SUFFIXES",
    "Format",
    "ParsedFile",
    "UnreadableFile",
    "format_of",
    "parse_file",
    "suffixes_help",
    "unstructured_status",
]

logger = logging.getLogger(__name__)

# The names this module had before it was split, for the tests and any code that reached
# into it (``_workers`` above is the live pool, not a copy). ``unstructured_status`` and
# ``_installed`` are called through this module's globals, so tests patch them here.
_check_docx_package = check_docx_package
_parse_docx = parse_docx
_parse_pdf = parse_pdf
_run_in_worker = run_in_worker
_shutdown_workers = shutdown_workers


@dataclass(frozen=True)
class ParsedFile:
    """The text of one file and how it was obtained."""

    text: str
    format: str  # "markdown" | "text" | "html" | "pdf" | "docx"
    warnings: tuple[str, ...] = ()


# The default of the setting ingest.parse_timeout (tests/test_settings.py ties them).
DEFAULT_PARSE_TIMEOUT = 60.0

DOCX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass(frozen=True)
class Format:
    """One document format: a row of :data:`FORMATS`.

    ``suffixes``: file suffixes (lower case) of this format; the first is given to a
    downloaded document whose URL names none. ``content_types``: HTTP Content-Types that
    mean this format. ``parser``: the built-in parser, a module-level function (the
    worker imports it by module and qualified name). ``in_worker``: run it in the sandbox
    worker (binary / XML containers). ``unstructured``: the parser through the optional
    ``unstructured`` (always in the worker), and ``unstructured_needs`` the (module, package)
    pairs it needs besides unstructured.
    """

    name: str
    suffixes: tuple[str, ...]
    content_types: tuple[str, ...]
    parser: Parser
    in_worker: bool = False
    unstructured: Parser | None = None
    unstructured_needs: tuple[tuple[str, str], ...] = ()


#: The formats ingest reads. Adding a format is one parser module and one row here: the
#: dispatch below, the worker's module list, the URL suffix and Content-Type lists
#: (:mod:`~milvus_rag.loaders.sources`) and the CLI's help are derived from this table.
FORMATS: tuple[Format, ...] = (
    Format(
        "markdown",
        (".md", ".markdown", ".mdx"),
        ("text/markdown", "text/x-markdown"),
        parse_text,
    ),
    Format("text", (".txt", ".rst", ".text"), ("text/plain",), parse_text),
    Format("html", (".html", ".htm"), ("text/html",), parse_html, unstructured=unstructured_html),
    Format(
        "pdf",
        (".pdf",),
        ("application/pdf",),
        parse_pdf,
        in_worker=True,
        unstructured=unstructured_pdf,
        unstructured_needs=tuple((m, m) for m in UNSTRUCTURED_PDF_MODULES),
    ),
    Format(
        "docx",
        (".docx",),
        (DOCX_CONTENT_TYPE,),
        parse_docx,
        in_worker=True,
        unstructured=unstructured_docx,
        unstructured_needs=(("docx", "python-docx"),),
    ),
)

_BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}
_SUFFIX_FORMATS: dict[str, str] = {s: f.name for f in FORMATS for s in f.suffixes}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_FORMATS)
#: Content-Type -> the suffix given to a downloaded document whose URL names none.
CONTENT_TYPE_SUFFIXES: dict[str, str] = {t: f.suffixes[0] for f in FORMATS for t in f.content_types}

# Formats whose parser runs in the sandbox worker (binary / XML containers).
_WORKER_FORMATS = frozenset(f.name for f in FORMATS if f.in_worker)

#: The modules the parser worker loads by path, in this order: the built-in parsers'
#: modules, then the unstructured parsers' (each imports only modules loaded before it).
PARSER_MODULES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [f.parser.__module__ for f in FORMATS]
        + [f.unstructured.__module__ for f in FORMATS if f.unstructured is not None]
    )
)


def format_of(name: str) -> str | None:
    """The format of a file by its suffix (case-insensitive); None when unsupported."""
    return _SUFFIX_FORMATS.get(PurePath(name).suffix.lower())


def suffixes_help() -> str:
    """The supported suffixes, for help texts: ``.md, .markdown, ...``."""
    return ", ".join(s for f in FORMATS for s in f.suffixes)


# Internal hooks: format -> parser (tests swap entries). A parser that runs in the
# worker must be a module-level function (the worker imports it by module and name).
_BUILTIN_PARSERS: dict[str, Parser] = {f.name: f.parser for f in FORMATS}
_UNSTRUCTURED_PARSERS: dict[str, Parser] = {
    f.name: f.unstructured for f in FORMATS if f.unstructured is not None
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
        SPACY_MODEL,
        SPACY_MODEL,
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
    missing = [pkg for module, pkg in _BY_NAME[fmt].unstructured_needs if not _installed(module)]
    if missing:
        if requested:
            raise UnreadableFile(
                f"unstructured cannot parse {fmt} here: missing {', '.join(missing)}"
            )
        logger.debug("unstructured %s extra missing (%s); using built-in parser", fmt, missing)
        return False
    return True


def parse_file(
    name: str,
    data: bytes,
    *,
    parse_timeout: float = DEFAULT_PARSE_TIMEOUT,
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
            text, found = run_in_worker(
                _UNSTRUCTURED_PARSERS[fmt], data, parse_timeout, PARSER_MODULES
            )
            return ParsedFile(text, fmt, found)
        except _ParserFailure as exc:
            if use_unstructured:
                raise UnreadableFile(f"unstructured failed: {exc}") from None
            notes = (one_line(f"unstructured failed ({exc}); used the built-in parser"),)
    parser = _BUILTIN_PARSERS[fmt]
    if fmt in _WORKER_FORMATS:
        text, found = run_in_worker(parser, data, parse_timeout, PARSER_MODULES)
    else:
        try:
            text, found = parser(data)
        except UnreadableFile:
            raise
        except Exception as exc:
            raise UnreadableFile(f"{fmt} parser failed: {describe(exc)}") from exc
    return ParsedFile(text, fmt, notes + tuple(found))
