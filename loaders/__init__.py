"""Loaders: sources (folder, file, zip, URL), format parsers and splitters.

Knows nothing of Milvus, the LLM or settings objects: plain arguments in,
``Document``\\ s out.
"""

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
