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

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.sync import ingest

        report = ingest("milvus_docs", load_settings(), glob="en/faq/*.md")
        print(report.summary())
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from milvus_rag import telemetry
from milvus_rag.filters import eq
from milvus_rag.keys import check_name
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD
from milvus_rag.store import (
    CHUNK_COUNT_FIELD,
    CHUNK_SET_FIELD,
    CHUNKER_FIELD,
    FORMAT_FIELD,
    ID_FIELD,
    ORIGIN_FIELD,
    POSITION_FIELD,
    SOURCE_FIELD,
    SOURCE_HASH_FIELD,
    TEXT_FIELD,
    TEXT_VIEW,
    VECTOR_FIELD,
    VIEW_FIELD,
    IngestLock,
    views_note,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.loaders.documents import Splitter
    from milvus_rag.loaders.sources import SourceFile
    from milvus_rag.loaders.splitters import Chunk
    from milvus_rag.settings import IngestSettings, Settings

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

_log = logging.getLogger(__name__)

STATE_FIELDS = [
    ID_FIELD,
    SOURCE_FIELD,
    SOURCE_HASH_FIELD,
    CHUNKER_FIELD,
    CHUNK_COUNT_FIELD,
    CHUNK_SET_FIELD,
    SCOPE_FIELD,
    VIEW_FIELD,
]


@dataclass
class IngestReport:
    """What an ingest did; :meth:`summary` is the one-line report the CLI prints."""

    files_seen: int = 0
    unchanged: int = 0
    added: int = 0
    updated: int = 0
    rechunked: int = 0
    deleted: int = 0
    skipped: int = 0
    chunks_written: int = 0
    """Chunks written; a chunk's other views (its question heading) count in ``views_written``."""
    chunks_deleted: int = 0
    views_written: int = 0
    views_deleted: int = 0
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.chunks_written or self.chunks_deleted or self.views_written or self.views_deleted
        )

    def summary(self) -> str:
        rechunked = f" (re-chunked {self.rechunked})" if self.rechunked else ""
        return (
            f"files seen {self.files_seen}, unchanged {self.unchanged}, added {self.added}, "
            f"updated {self.updated}{rechunked}, deleted {self.deleted}, skipped {self.skipped}; "
            f"chunks written {self.chunks_written}{views_note(self.views_written)}, "
            f"deleted {self.chunks_deleted}{views_note(self.views_deleted)}; "
            f"{self.seconds:.1f} s, {self.chunks_per_second:.1f} chunks/s"
        )

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("skipped_files",)}
        data["skipped_files"] = [{"source": s, "reason": r} for s, r in self.skipped_files]
        data["chunks_per_second"] = round(self.chunks_per_second, 2)
        return data


@dataclass
class Progress:
    """Callbacks the CLI uses to draw a progress bar (all optional)."""

    start: Callable[[int], None] = lambda total_files: None
    file_done: Callable[[str], None] = lambda path: None
    chunks_written: Callable[[int], None] = lambda count: None


def chunk_id(
    origin: str,
    source: str,
    source_hash: str,
    chunker: str,
    position: int,
    text: str,
    view: str = "text",
    scope: str = DEFAULT_SCOPE,
) -> str:
    """Deterministic id of a stored row (32 hex characters).

    Everything that determines it goes in: where its file came from, the file's
    content, the chunking that cut it, its position, its text, the view of the
    chunk its vector embeds and the scope it belongs to.
    """
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    key = f"{origin}\0{source}\0{source_hash}\0{chunker}\0{position}\0{text_hash}\0{view}\0{scope}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class ChunkRow:
    """One row to write: its fields, and the text its vector is computed from."""

    fields: dict[str, Any]
    embed: str


def chunk_set_digest(ids: Iterable[str]) -> str:
    """Digest of a file's complete set of chunk ids (order-free, 16 hex characters)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


@dataclass
class _StoredSource:
    """What Milvus holds for one source file (possibly several partial versions)."""

    ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    chunkers: set[str] = field(default_factory=set)
    counts: set[int] = field(default_factory=set)
    sets: set[str] = field(default_factory=set)

    views: set[str] = field(default_factory=set)
    """The ids among ``ids`` of rows holding another view of a chunk (not its text)."""

    def add(self, row: dict[str, Any]) -> None:
        self.ids.add(str(row[ID_FIELD]))
        if row.get(VIEW_FIELD, TEXT_VIEW) != TEXT_VIEW:
            self.views.add(str(row[ID_FIELD]))
        self.hashes.add(str(row.get(SOURCE_HASH_FIELD)))
        self.chunkers.add(str(row.get(CHUNKER_FIELD)))
        self.counts.add(_as_int(row.get(CHUNK_COUNT_FIELD)))
        self.sets.add(str(row.get(CHUNK_SET_FIELD)))

    def complete(self, source_hash: str, chunker: str) -> bool:
        """True when the stored chunks are exactly one whole chunking of this content."""
        return (
            self.hashes == {source_hash}
            and self.chunkers == {chunker}
            and self.counts == {len(self.ids)}
            and self.sets == {chunk_set_digest(self.ids)}
        )


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


@dataclass
class PendingFile:
    path: str
    stale: set[str]
    remaining: int


class _Writer:
    """Embeds and inserts buffered chunks in bounded batches, then retires files."""

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
        with telemetry.step("ingest.write", collection=self.collection, chunks=chunks, views=views):
            self.client.insert(self.collection, [row.fields for row in self.rows])
        self.report.chunks_written += len(self.rows) - views
        self.report.views_written += views
        self.progress.chunks_written(len(self.rows))
        for pending in self.row_files:
            pending.remaining -= 1
        self.rows, self.row_files, self.bytes = [], [], 0
        self._retire()

    def _retire(self) -> None:
        """Delete the stale chunks of files whose new chunks are all written."""
        done = [p for p in self.files if p.remaining == 0]
        self.files = [p for p in self.files if p.remaining > 0]
        for pending in done:
            if pending.stale:
                self.client.delete(self.collection, ids=sorted(pending.stale))
                views = len(pending.stale & self.view_ids)
                self.report.chunks_deleted += len(pending.stale) - views
                self.report.views_deleted += views


def _stored_state(
    client: MilvusClient, collection: str, origin: str, scope: str
) -> dict[str, _StoredSource]:
    """What ``collection`` holds of ``origin`` in ``scope`` (rows stored before scopes
    belong to the default scope), by source path."""
    state: dict[str, _StoredSource] = {}
    iterator = client.query_iterator(
        collection, batch_size=4096, filter=eq(ORIGIN_FIELD, origin), output_fields=STATE_FIELDS
    )
    try:
        while True:
            batch = iterator.next()
            if not batch:
                break
            for row in batch:
                if (row.get(SCOPE_FIELD) or DEFAULT_SCOPE) != scope:
                    continue  # another scope's copy: not this ingest's to touch
                state.setdefault(str(row.get(SOURCE_FIELD)), _StoredSource()).add(row)
    finally:
        iterator.close()
    return state


def ingest(
    source: str | os.PathLike[str],
    settings: Settings,
    *,
    embeddings: MilvusModelEmbeddings | None = None,
    glob: str | None = None,
    splitter: str | None = None,
    recreate: bool = False,
    prune: bool = False,
    progress: Progress | None = None,
    scope: str | None = None,
) -> IngestReport:
    """Bring the collection in line with ``source`` (folder, file, zip or URL).

    ``settings.ingest.engine`` picks where files are parsed, split and embedded:
    ``local`` (this process) or ``ray`` (Ray Data stages on a Ray cluster, see
    :mod:`milvus_rag.ray_ingest`). Both write the same rows and sync state.

    Args:
        source: what to ingest.
        settings: the loaded settings.
        embeddings: the model (default: built from ``settings.embedding``).
        glob: which files inside the source (default ``settings.ingest.glob``: all).
        splitter: ``markdown`` (default) or ``tutorial``.
        recreate: drop the collection first.
        prune: delete chunks of files that no longer exist in the source (in ``scope``).
        progress: progress callbacks.
        scope: the document scope every chunk is recorded in (default
            ``settings.ingest.scope``); the same source in two scopes is two copies.

    Raises:
        SourceError, StoreError, EmbeddingError subclasses; ConfigError when the
        Ray engine is chosen without Ray installed. Nothing stored is lost.
    """
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.loaders.sources import open_source
    from milvus_rag.store import connect

    started = time.perf_counter()
    engine = _engine(settings)
    progress = progress or Progress()
    embeddings = embeddings or embeddings_from_settings(settings)
    glob = glob if glob is not None else settings.ingest.glob
    split = splitter_for(settings, embeddings, splitter)

    with (
        telemetry.step(
            "ingest", collection=settings.milvus.collection, engine=settings.ingest.engine
        ) as done,
        open_source(source, glob=glob, limits=_limits(settings)) as listing,
        engine as step,
    ):
        # Load the model before connecting: a bad source or model leaves no empty database.
        embeddings.identity()
        client = connect(settings.milvus)
        try:
            run = IngestRun(listing, settings, embeddings, split, progress)
            run.scope = check_name(scope or settings.ingest.scope, "scope")
            _sync(client, run, step, glob, recreate, prune)
        finally:
            client.close()
        done.set(files=run.report.files_seen, chunks_written=run.report.chunks_written)
    run.report.seconds = time.perf_counter() - started
    telemetry.ingested(run.report)
    return run.report


#: Processes a run's files: reads, plans and hands rows to ``run.writer``.
FilesStep = Callable[["IngestRun"], None]


def _engine(settings: Settings) -> AbstractContextManager[FilesStep]:
    """The engine's files step, in effect while the context lasts (Ray runs in it)."""
    if settings.ingest.engine == "ray":
        from milvus_rag.ray_ingest import RayEngine

        return RayEngine(settings)  # raises ConfigError now when Ray is not installed
    return nullcontext(_local_files)


@dataclass
class IngestRun:
    """One ingest in progress: what an engine reads from and writes to."""

    listing: Any
    settings: Settings
    embeddings: MilvusModelEmbeddings
    split: Splitter
    progress: Progress
    report: IngestReport = field(default_factory=IngestReport)
    state: dict[str, _StoredSource] = field(default_factory=dict)
    scope: str = DEFAULT_SCOPE
    writer: _Writer = field(init=False)


def _sync(
    client: MilvusClient,
    run: IngestRun,
    files_step: FilesStep,
    glob: str | None,
    recreate: bool,
    prune: bool,
) -> None:
    from milvus_rag.loaders.sources import glob_match
    from milvus_rag.store import ensure_collection, record_ingest

    settings, report, listing = run.settings, run.report, run.listing
    collection = settings.milvus.collection
    with IngestLock(client, settings):
        ensure_collection(client, settings, run.embeddings, create=True, recreate=recreate)
        run.state = _stored_state(client, collection, listing.origin, run.scope)
        embed = run.embeddings if files_step is _local_files else None
        run.writer = _Writer(client, collection, embed, settings, report, run.progress)
        run.writer.view_ids = {i for stored in run.state.values() for i in stored.views}
        run.progress.start(len(listing.files))
        files_step(run)
        run.writer.flush()
        if prune:
            seen = {item.path for item in listing.files}
            for path, stored in run.state.items():
                if path in seen or (glob and not glob_match(path, glob)):
                    continue
                client.delete(collection, ids=sorted(stored.ids))
                report.deleted += 1
                report.chunks_deleted += len(stored.ids - stored.views)
                report.views_deleted += len(stored.views)
        record_ingest(
            client,
            collection,
            origin=listing.origin,
            glob=glob,
            splitter=run.split.name,
            chunker=run.split.fingerprint,
        )
        if report.changed:
            client.flush(collection)


def _local_files(run: IngestRun) -> None:
    """The local engine: each file read, parsed, split and embedded in this process."""
    for item in run.listing.files:
        run.report.files_seen += 1
        read = read_file(item, run.state.get(item.path), run.split.fingerprint, run.report)
        if read is not None:
            stored = run.state.get(item.path)
            with telemetry.step("ingest.parse", source=item.path) as parsed:
                plan = plan_file(
                    item.path,
                    read,
                    run.listing.origin,
                    run.split,
                    stored.ids if stored is not None else set(),
                    run.settings.ingest.parse_timeout,
                    run.scope,
                )
                parsed.set(chunks=len(plan.rows))
            del read
            stale = settle_file(plan, stored, run.report)
            if stale is not None:
                run.writer.add_file(PendingFile(plan.path, stale, len(plan.rows)), plan.rows)
        run.progress.file_done(item.path)


@dataclass
class FileRead:
    """A changed file's bytes and their hash (what a planner needs besides settings)."""

    data: bytes
    source_hash: str


def read_file(
    item: SourceFile, stored: _StoredSource | None, chunker: str, report: IngestReport
) -> FileRead | None:
    """Read a listed file; None (recorded on ``report``) when skipped or unchanged."""
    from milvus_rag.errors import SourceError
    from milvus_rag.loaders.formats import format_of

    if format_of(item.path) is None:
        _skip(report, item.path, "unsupported file type")
        return None
    try:
        data = item.read_bytes()
    except SourceError as exc:
        _skip(report, item.path, str(exc))
        return None
    source_hash = hashlib.sha256(data).hexdigest()
    if stored is not None and stored.complete(source_hash, chunker):
        report.unchanged += 1
        return None
    return FileRead(data, source_hash)


@dataclass
class FilePlan:
    """What one changed file needs: rows to write, stored ids to delete after them."""

    path: str
    source_hash: str
    chunker: str
    rows: list[ChunkRow] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    skip: str | None = None
    """Why the file gives no chunks (then ``rows`` and ``stale`` are empty)."""
    warnings: list[str] = field(default_factory=list)


def plan_file(
    path: str,
    read: FileRead,
    origin: str,
    split: Splitter,
    have: set[str],
    parse_timeout: float,
    scope: str = DEFAULT_SCOPE,
) -> FilePlan:
    """Parse, split and turn into rows one changed file (no Milvus, no model).

    ``have`` are the ids Milvus holds for ``path``: rows among them (kept from a
    killed run) are not written again; the others are stale.
    """
    from milvus_rag.loaders.formats import UnreadableFile, parse_file

    plan = FilePlan(path, read.source_hash, split.fingerprint)
    try:
        parsed = parse_file(path, read.data, parse_timeout=parse_timeout)
    except UnreadableFile as exc:
        plan.skip = str(exc)
        return plan
    plan.warnings = list(parsed.warnings)
    chunks = split(parsed.text)
    if not chunks:
        plan.skip = "no text after splitting"
        return plan
    rows = chunk_rows(path, origin, read.source_hash, parsed.format, chunks, split, scope)
    ids = {row.fields[ID_FIELD] for row in rows}
    plan.rows = [row for row in rows if row.fields[ID_FIELD] not in have]
    plan.stale = have - ids
    return plan


def settle_file(
    plan: FilePlan, stored: _StoredSource | None, report: IngestReport
) -> set[str] | None:
    """Record a planned file on ``report``; the ids to delete once its rows are written.

    None when the file needs no writer at all (skipped, nothing stored to replace).
    """
    report.warnings.extend(f"{plan.path}: {w}" for w in plan.warnings)
    if plan.skip is not None:
        _skip(report, plan.path, plan.skip)
        return _replaced(plan, stored, report)
    if stored is None:
        report.added += 1
    else:
        report.updated += 1
        if stored.hashes == {plan.source_hash} and stored.chunkers != {plan.chunker}:
            report.rechunked += 1
    return plan.stale


def _replaced(
    plan: FilePlan, stored: _StoredSource | None, report: IngestReport
) -> set[str] | None:
    """The chunks of a file's earlier content to delete when its new content gives none.

    A clean ingest of the source would hold nothing for this file. Chunks of the
    same content are kept: then the failure may be passing (a parse timeout).
    """
    if stored is None or plan.source_hash in stored.hashes:
        return None
    report.updated += 1
    return set(stored.ids)


def chunk_rows(
    source: str,
    origin: str,
    source_hash: str,
    fmt: str,
    chunks: list[Chunk],
    split: Splitter,
    scope: str = DEFAULT_SCOPE,
) -> list[ChunkRow]:
    """The rows a file's chunks are stored as: one per chunk and view.

    Every row holds the chunk's text and metadata plus the sync fields; its
    vector embeds one view of the chunk (``view``: ``text``, ``question``).
    A pure function of its arguments: any engine that writes these rows gives
    the same collection.
    """
    chunker = split.fingerprint
    planned: list[tuple[str, str, int, Chunk, str]] = []
    for position, chunk in enumerate(chunks):
        for view, embed in split.views(chunk):
            cid = chunk_id(origin, source, source_hash, chunker, position, chunk.text, view, scope)
            planned.append((cid, view, position, chunk, embed))
    chunk_set = chunk_set_digest(cid for cid, *_ in planned)
    rows = []
    for cid, view, position, chunk, embed in planned:
        fields: dict[str, Any] = dict(chunk.metadata)
        fields.update(
            {
                SOURCE_FIELD: source,
                ORIGIN_FIELD: origin,
                SOURCE_HASH_FIELD: source_hash,
                CHUNKER_FIELD: chunker,
                POSITION_FIELD: position,
                VIEW_FIELD: view,
                CHUNK_COUNT_FIELD: len(planned),
                CHUNK_SET_FIELD: chunk_set,
                FORMAT_FIELD: fmt,
                SCOPE_FIELD: scope,
            }
        )
        rows.append(ChunkRow({ID_FIELD: cid, TEXT_FIELD: chunk.text, **fields}, embed))
    return rows


def _skip(report: IngestReport, path: str, reason: str) -> None:
    report.skipped += 1
    report.skipped_files.append((path, reason))


def splitter_for(
    settings: Settings | IngestSettings,
    embeddings: MilvusModelEmbeddings,
    name: str | None = None,
) -> Splitter:
    """The splitter an ingest with these settings uses (``name`` overrides the setting).

    Give it to :class:`~milvus_rag.loaders.SourceLoader` to get the chunks an
    ingest stores. The markdown splitter counts tokens with the embedding model's
    own tokenizer (a separate instance: see ``MilvusModelEmbeddings.token_counter``).
    ``settings`` may be the ``ingest`` section alone (what a Ray worker receives).
    """
    from milvus_rag.loaders import make_splitter

    i = cast("IngestSettings", getattr(settings, "ingest", settings))
    name = name or i.splitter
    return make_splitter(
        name,
        max_tokens=i.chunk_tokens,
        overlap=i.chunk_overlap,
        min_chars=i.min_chunk_chars,
        length_function=embeddings.token_counter() if name == "markdown" else None,
    )


def _limits(settings: Settings) -> Any:
    from milvus_rag.loaders.sources import SourceLimits

    return SourceLimits.from_settings(settings.ingest)
