"""The plan both ingest engines share: what a file becomes (rows with deterministic ids),
what Milvus holds of it, and what a run reports. No Milvus client, no model: pure functions
of a file's bytes and the settings (see :mod:`milvus_rag.sync`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

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
    VIEW_FIELD,
    views_note,
)

if TYPE_CHECKING:
    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.loaders.documents import Splitter
    from milvus_rag.loaders.sources import SourceFile
    from milvus_rag.loaders.splitters import Chunk
    from milvus_rag.settings import IngestSettings, Settings

__all__ = [
    "STATE_FIELDS",
    "ChunkRow",
    "FilePlan",
    "FileRead",
    "IngestReport",
    "Progress",
    "StoredFile",
    "chunk_id",
    "chunk_rows",
    "chunk_set_digest",
    "plan_file",
    "read_file",
    "settle_file",
    "skip_file",
    "splitter_for",
]


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
class StoredFile:
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
class FileRead:
    """A changed file's bytes and their hash (what a planner needs besides settings)."""

    data: bytes
    source_hash: str


def read_file(
    item: SourceFile, stored: StoredFile | None, chunker: str, report: IngestReport
) -> FileRead | None:
    """Read a listed file; None (recorded on ``report``) when skipped or unchanged."""
    from milvus_rag.errors import SourceError
    from milvus_rag.loaders.formats import format_of

    if format_of(item.path) is None:
        skip_file(report, item.path, "unsupported file type")
        return None
    try:
        data = item.read_bytes()
    except SourceError as exc:
        skip_file(report, item.path, str(exc))
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


def settle_file(plan: FilePlan, stored: StoredFile | None, report: IngestReport) -> set[str] | None:
    """Record a planned file on ``report``; the ids to delete once its rows are written.

    None when the file needs no writer at all (skipped, nothing stored to replace).
    """
    report.warnings.extend(f"{plan.path}: {w}" for w in plan.warnings)
    if plan.skip is not None:
        skip_file(report, plan.path, plan.skip)
        return _replaced(plan, stored, report)
    if stored is None:
        report.added += 1
    else:
        report.updated += 1
        if stored.hashes == {plan.source_hash} and stored.chunkers != {plan.chunker}:
            report.rechunked += 1
    return plan.stale


def _replaced(plan: FilePlan, stored: StoredFile | None, report: IngestReport) -> set[str] | None:
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


def skip_file(report: IngestReport, path: str, reason: str) -> None:
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
