"""The names of the fields milvus-rag's rows hold, written once (the store re-exports them).

A module of its own so that :mod:`milvus_rag.filters` and :mod:`milvus_rag.scopes` can name
fields without importing the store (which imports them).
"""

from __future__ import annotations

__all__ = [
    "BOOKKEEPING_FIELDS",
    "CHUNKER_FIELD",
    "CHUNK_COUNT_FIELD",
    "CHUNK_SET_FIELD",
    "FORMAT_FIELD",
    "HEADING_FIELD",
    "ID_FIELD",
    "ORIGIN_FIELD",
    "POSITION_FIELD",
    "SCOPE_MAX_LENGTH",
    "SOURCE_FIELD",
    "SOURCE_HASH_FIELD",
    "SPARSE_FIELD",
    "TEXT_FIELD",
    "VECTOR_FIELD",
    "VIEW_FIELD",
]

ID_FIELD = "id"
TEXT_FIELD = "text"
VECTOR_FIELD = "vector"
SPARSE_FIELD = "sparse"
#: Longest scope name (milvus_rag.keys checks names).
SCOPE_MAX_LENGTH = 64
SOURCE_FIELD = "source"
"""The file's path relative to its source root (``en/faq/a.md``)."""
ORIGIN_FIELD = "origin"
"""The source root: the ingested folder's, file's or zip's absolute path, or the URL."""
POSITION_FIELD = "position"
HEADING_FIELD = "heading"
VIEW_FIELD = "view"
FORMAT_FIELD = "format"
SOURCE_HASH_FIELD = "source_hash"
CHUNKER_FIELD = "chunker"
CHUNK_COUNT_FIELD = "chunk_count"
CHUNK_SET_FIELD = "chunk_set"
#: Row fields that are ingest bookkeeping (see ``milvus_rag.sync``): they stay in Milvus
#: and never reach a retrieved document (``origin`` only when asked: retrieval.include_origin).
BOOKKEEPING_FIELDS = frozenset(
    {SOURCE_HASH_FIELD, CHUNKER_FIELD, CHUNK_COUNT_FIELD, CHUNK_SET_FIELD, VIEW_FIELD}
)
