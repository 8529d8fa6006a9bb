"""One ingest run in progress: what an engine reads from (:class:`IngestRun`) and the
:class:`Writer` that embeds, inserts and retires files in bounded batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from milvus_rag import telemetry
from milvus_rag.scopes import DEFAULT_SCOPE
from milvus_rag.store import (
    TEXT_FIELD,
    TEXT_VIEW,
    VECTOR_FIELD,
    VIEW_FIELD,
    RowWriter,
    delete_ids,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.loaders.documents import Splitter
    from milvus_rag.settings import Settings
from milvus_rag.sync.plan import (
    ChunkRow,
    IngestReport,
    Progress,
    StoredFile,
)

__all__ = [
    "FilesStep",
    "IngestRun",
    "PendingFile",
    "Writer",
]


@dataclass
class PendingFile:
    path: str
    stale: set[str]
    remaining: int


class Writer:
    """Embeds and inserts buffered chunks in bounded batches, then retires files.

    Up to ``ingest.write_concurrency`` inserts run while the next batch is embedded
    (:class:`~milvus_rag.store.RowWriter`); a batch counts as written, and a file whose
    rows are all written is retired, only once its insert has returned. Use it as a
    context manager and call :meth:`finish` before recording the run: leaving the
    block waits for every insert still running.
    """

    def __init__(
        self,
        client: MilvusClient,
        collection: str,
        embeddings: MilvusModelEmbeddings | None,
        settings: Settings,
        report: IngestReport,
        progress: Progress,
    ) -> None:
        self.client = client
        self.collection = collection
        self.inserts = RowWriter(client, collection, in_flight=settings.ingest.write_concurrency)
        self.embeddings = embeddings
        self.max_rows = settings.ingest.write_batch
        self.max_bytes = settings.ingest.write_batch_bytes
        self.report = report
        self.progress = progress
        self.rows: list[ChunkRow] = []
        self.row_files: list[PendingFile] = []
        self.bytes = 0
        self.files: list[PendingFile] = []
        #: Stored ids of rows holding another view of a chunk (counted apart when deleted).
        self.view_ids: set[str] = set()

    def add_file(self, pending: PendingFile, rows: list[ChunkRow]) -> None:
        self.track(pending)
        self.add_rows(pending, rows)

    def track(self, pending: PendingFile) -> None:
        """Retire ``pending`` (delete its stale chunks) once its remaining rows are written."""
        self.files.append(pending)

    def add_rows(self, pending: PendingFile, rows: list[ChunkRow]) -> None:
        """Buffer rows of ``pending``'s file, writing full batches."""
        for row in rows:
            size = len(row.fields[TEXT_FIELD].encode("utf-8")) + 64 + 4 * 1024
            if self.rows and (
                len(self.rows) >= self.max_rows or self.bytes + size > self.max_bytes
            ):
                self.flush()
            self.rows.append(row)
            self.row_files.append(pending)
            self.bytes += size
        self._retire()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.embeddings is not None:  # else the rows come with their vectors (Ray engine)
            with telemetry.step("ingest.embed", chunks=len(self.rows)):
                vectors = self.embeddings.embed_documents([row.embed for row in self.rows])
            for row, vector in zip(self.rows, vectors, strict=True):
                row.fields[VECTOR_FIELD] = vector
        views = sum(1 for row in self.rows if row.fields.get(VIEW_FIELD, TEXT_VIEW) != TEXT_VIEW)
        chunks = len(self.rows) - views
        rows, row_files = self.rows, self.row_files
        self.rows, self.row_files, self.bytes = [], [], 0

        def written() -> None:
            self.report.chunks_written += chunks
            self.report.views_written += views
            self.progress.chunks_written(len(rows))
            for pending in row_files:
                pending.remaining -= 1
            self._retire()

        # With inserts in flight this step is the hand-over: the wait for the oldest insert
        # when ``write_concurrency`` are already running, not this batch's own write.
        with telemetry.step("ingest.write", collection=self.collection, chunks=chunks, views=views):
            self.inserts.write([row.fields for row in rows], done=written)

    def finish(self) -> None:
        """Write what is buffered and wait for every insert (files retire as they finish)."""
        self.flush()
        self.inserts.drain()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inserts.close()

    def _retire(self) -> None:
        """Delete the stale chunks of files whose new chunks are all written."""
        done = [p for p in self.files if p.remaining == 0]
        self.files = [p for p in self.files if p.remaining > 0]
        for pending in done:
            if pending.stale:
                delete_ids(self.client, self.collection, sorted(pending.stale))
                views = len(pending.stale & self.view_ids)
                self.report.chunks_deleted += len(pending.stale) - views
                self.report.views_deleted += views


#: Processes a run's files: reads, plans and hands rows to ``run.writer``.
FilesStep = Callable[["IngestRun"], None]


@dataclass
class IngestRun:
    """One ingest in progress: what an engine reads from and writes to."""

    listing: Any
    settings: Settings
    embeddings: MilvusModelEmbeddings
    split: Splitter
    progress: Progress
    report: IngestReport = field(default_factory=IngestReport)
    state: dict[str, StoredFile] = field(default_factory=dict)
    scope: str = DEFAULT_SCOPE
    writer: Writer = field(init=False)
