"""Incremental, idempotent ingest of a source into the Milvus collection.

How a rerun stays cheap and safe:

* chunking is a pure function of a file's bytes and the chunking settings
  (splitter, sizes, overlap, the tokenizer that counts): its fingerprint
  (``chunker``) is recorded with every chunk;
* every chunk's id is derived from its origin, source path, the file's content
  hash, the chunker, its position and its text, so the same file always gives
  the same ids;
* each chunk stores ``source``, ``origin``, ``source_hash``, ``chunker``,
  ``chunk_count`` and ``chunk_set`` (a digest of all the file's chunk ids) in
  Milvus itself (no side database). A file is complete only when its stored
  chunks are exactly the set the current chunking produces: one hash, one
  chunker, as many ids as ``chunk_count`` and those ids digesting to
  ``chunk_set``. Anything else (partial, mixed, extra) is rewritten;
* a file's missing chunks are written first and only then are its stale chunks
  deleted, so a failure or a kill at any point loses nothing, and the next run
  converges to what a clean ingest gives, without duplicates;
* files stream through in bounded batches (by count and by bytes), so memory
  does not grow with the corpus; the collection is flushed at the end.

The package: :mod:`~milvus_rag.sync.plan` (what a file becomes; both engines share it),
:mod:`~milvus_rag.sync.run` (a run and its writer), :mod:`~milvus_rag.sync.local` (``ingest``
and the local engine), :mod:`~milvus_rag.sync.ray` (the Ray engine).

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.sync import ingest

        report = ingest("milvus_docs", load_settings(), glob="en/faq/*.md")
        print(report.summary())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from milvus_rag.lazy import lazy_exports

if TYPE_CHECKING:
    from milvus_rag.sync.local import ingest
    from milvus_rag.sync.plan import (
        ChunkRow,
        FilePlan,
        FileRead,
        IngestReport,
        Progress,
        chunk_id,
        chunk_rows,
        chunk_set_digest,
        plan_file,
        read_file,
        settle_file,
        splitter_for,
    )
    from milvus_rag.sync.run import IngestRun

__all__ = [
    "ChunkRow",
    "FilePlan",
    "FileRead",
    "IngestReport",
    "IngestRun",
    "Progress",
    "chunk_id",
    "chunk_rows",
    "chunk_set_digest",
    "ingest",
    "plan_file",
    "read_file",
    "settle_file",
    "splitter_for",
]

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "ChunkRow": "milvus_rag.sync.plan",
        "FilePlan": "milvus_rag.sync.plan",
        "FileRead": "milvus_rag.sync.plan",
        "IngestReport": "milvus_rag.sync.plan",
        "IngestRun": "milvus_rag.sync.run",
        "Progress": "milvus_rag.sync.plan",
        "chunk_id": "milvus_rag.sync.plan",
        "chunk_rows": "milvus_rag.sync.plan",
        "chunk_set_digest": "milvus_rag.sync.plan",
        "ingest": "milvus_rag.sync.local",
        "plan_file": "milvus_rag.sync.plan",
        "read_file": "milvus_rag.sync.plan",
        "settle_file": "milvus_rag.sync.plan",
        "splitter_for": "milvus_rag.sync.plan",
    },
)
