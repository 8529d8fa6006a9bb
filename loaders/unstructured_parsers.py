"""The optional unstructured path: whether it can run offline, and its parsers.

``unstructured`` is optional. Version 0.27 loads the spaCy model
``en_core_web_sm`` on its first partition and, if the model package is not
installed, downloads it from GitHub (``unstructured.nlp.tokenize``); it also
pings a telemetry endpoint when imported unless ``DO_NOT_TRACK`` is set. So
:func:`unstructured_status` decides *without importing unstructured* (only
import-system look-ups) whether it can run offline, and the parsers here
(:func:`unstructured_html`, :func:`unstructured_docx`, :func:`unstructured_pdf`),
which run only in the parser worker, opt out of telemetry and replace the model
installer with a refusal before unstructured is imported; the worker also
blocks sockets. Whether to take this path for a file is decided by
:mod:`milvus_rag.loaders.formats`.

The parser worker loads this file by path: standard library and sibling parser
modules only; unstructured is imported when a file is parsed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

from milvus_rag.loaders.docx_parser import check_docx_package
from milvus_rag.loaders.html_parser import parse_html
from milvus_rag.loaders.parser_base import UnreadableFile
from milvus_rag.loaders.parser_worker import WORKER_ENV
from milvus_rag.loaders.text_parser import looks_binary

__all__ = [
    "SPACY_MODEL",
    "UNSTRUCTURED_PDF_MODULES",
    "installed",
    "unstructured_docx",
    "unstructured_html",
    "unstructured_pdf",
    "unstructured_status",
]

SPACY_MODEL = "en_core_web_sm"
_NLTK_RESOURCES = ("tokenizers/punkt_tab", "taggers/averaged_perceptron_tagger_eng")
# What unstructured's PDF partitioning needs beyond unstructured itself (its pdf extra).
UNSTRUCTURED_PDF_MODULES = ("pdfminer", "pi_heif", "PIL", "unstructured_inference")


def installed(module: str) -> bool:
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
        model = match.group(1) if match else SPACY_MODEL
        if not installed("spacy"):
            return False, f"unstructured {version} needs spaCy, which is not installed"
        try:
            importlib.metadata.distribution(model)
            model_found = installed(model)
        except importlib.metadata.PackageNotFoundError:
            model_found = False
        if not model_found:
            return False, (
                f"the spaCy model package '{model}' is not installed; unstructured {version} "
                "would download it from GitHub on its first partition (fails offline)"
            )
        return True, f"unstructured {version} with spaCy model '{model}' installed"
    if "nltk" in source:
        if not installed("nltk"):
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
        f"unstructured tried to download the spaCy model '{SPACY_MODEL}'; "
        "downloads are disabled in the parser worker"
    )


def _prepare_unstructured() -> None:
    """In the worker: opt out of telemetry and make model downloads fail at once."""
    for key, value in WORKER_ENV.items():
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
        return str(parse_html(str(markup).encode("utf-8"))[0])
    except UnreadableFile:
        return fallback


def _finish_unstructured(elements: list[Any]) -> tuple[str, tuple[str, ...]]:
    text = _elements_to_text(elements)
    if not text:
        raise UnreadableFile("no text content")
    return text, ()


def unstructured_html(data: bytes) -> tuple[str, tuple[str, ...]]:
    if looks_binary(data):
        raise UnreadableFile("binary content")
    _prepare_unstructured()
    from unstructured.partition.html import partition_html

    return _finish_unstructured(partition_html(file=io.BytesIO(data)))


def unstructured_docx(data: bytes) -> tuple[str, tuple[str, ...]]:
    check_docx_package(data)
    _prepare_unstructured()
    from unstructured.partition.docx import partition_docx

    return _finish_unstructured(partition_docx(file=io.BytesIO(data)))


def unstructured_pdf(data: bytes) -> tuple[str, tuple[str, ...]]:
    _prepare_unstructured()
    from unstructured.partition.pdf import partition_pdf

    return _finish_unstructured(partition_pdf(file=io.BytesIO(data), strategy="fast"))
