"""Loaders: sources (folder, file, zip, URL), format parsers and splitters.

Knows nothing of Milvus, the LLM or settings objects: plain arguments in,
``Document``\\ s out. Each public name is imported on first access (module
``__getattr__``), so importing one light submodule (e.g. the table of formats,
:mod:`milvus_rag.loaders.formats`, which the CLI's help reads) loads no LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from milvus_rag.lazy import lazy_exports

if TYPE_CHECKING:
    from milvus_rag.loaders.documents import SPLITTERS, SourceLoader, Splitter, make_splitter
    from milvus_rag.loaders.formats import ParsedFile, UnreadableFile, format_of, parse_file
    from milvus_rag.loaders.sources import SourceFile, SourceLimits, glob_match, open_source
    from milvus_rag.loaders.splitters import Chunk, MarkdownSplitter, cap_bytes, split_tutorial

__all__ = [
    "SPLITTERS",
    "Chunk",
    "MarkdownSplitter",
    "ParsedFile",
    "SourceFile",
    "SourceLimits",
    "SourceLoader",
    "Splitter",
    "UnreadableFile",
    "cap_bytes",
    "format_of",
    "glob_match",
    "make_splitter",
    "open_source",
    "parse_file",
    "split_tutorial",
]

# Public name -> the module defining it (imported on first access).
_LAZY: dict[str, str] = {
    "SPLITTERS": "milvus_rag.loaders.documents",
    "SourceLoader": "milvus_rag.loaders.documents",
    "Splitter": "milvus_rag.loaders.documents",
    "make_splitter": "milvus_rag.loaders.documents",
    "ParsedFile": "milvus_rag.loaders.formats",
    "UnreadableFile": "milvus_rag.loaders.formats",
    "format_of": "milvus_rag.loaders.formats",
    "parse_file": "milvus_rag.loaders.formats",
    "SourceFile": "milvus_rag.loaders.sources",
    "SourceLimits": "milvus_rag.loaders.sources",
    "glob_match": "milvus_rag.loaders.sources",
    "open_source": "milvus_rag.loaders.sources",
    "Chunk": "milvus_rag.loaders.splitters",
    "MarkdownSplitter": "milvus_rag.loaders.splitters",
    "cap_bytes": "milvus_rag.loaders.splitters",
    "split_tutorial": "milvus_rag.loaders.splitters",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
