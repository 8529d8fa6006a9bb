"""``ingest()``: a source brought in line with the collection, by the local engine (this
process) or the Ray engine (:mod:`milvus_rag.sync.ray`), under the ingest lock."""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, closing, nullcontext
from typing import TYPE_CHECKING, Any

from milvus_rag import telemetry
from milvus_rag.filters import eq
from milvus_rag.keys import check_name
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD
from milvus_rag.store import (
    ORIGIN_FIELD,
    SOURCE_FIELD,
    IngestLock,
    delete_ids,
    flush_collection,
    iter_rows,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import Settings
from milvus_rag.sync.plan import (
    STATE_FIELDS,
    IngestReport,
    Progress,
    StoredFile,
    plan_file,
    read_file,
    settle_file,
    splitter_for,
)
from milvus_rag.sync.run import (
    FilesStep,
    IngestRun,
    PendingFile,
    Writer,
)

__all__ = [
    "ingest",
]


def _stored_state(
    client: MilvusClient, collection: str, origin: str, scope: str
) -> dict[str, StoredFile]:
    """What ``collection`` holds of ``origin`` in ``scope`` (rows stored before scopes
    belong to the default scope), by source path."""
    state: dict[str, StoredFile] = {}
    rows = iter_rows(
        client, collection, filter=str(eq(ORIGIN_FIELD, origin)), output_fields=STATE_FIELDS
    )
    for batch in rows:
        for row in batch:
            if (row.get(SCOPE_FIELD) or DEFAULT_SCOPE) != scope:
                continue  # another scope's copy: not this ingest's to touch
            state.setdefault(str(row.get(SOURCE_FIELD)), StoredFile()).add(row)
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
    :mod:`milvus_rag.sync.ray`). Both write the same rows and sync state.

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
        run = IngestRun(listing, settings, embeddings, split, progress)
        _connected_sync(run, scope, step, glob, recreate, prune)
        done.set(files=run.report.files_seen, chunks_written=run.report.chunks_written)
    run.report.seconds = time.perf_counter() - started
    telemetry.ingested(run.report)
    return run.report


def _connected_sync(
    run: IngestRun,
    scope: str | None,
    files_step: FilesStep,
    glob: str | None,
    recreate: bool,
    prune: bool,
) -> None:
    """Connect to Milvus and bring the collection in line with ``run``'s listing, in
    ``scope`` (default ``ingest.scope``); the connection is closed after."""
    from milvus_rag.store import connect

    with closing(connect(run.settings.milvus)) as client:
        run.scope = check_name(scope or run.settings.ingest.scope, "scope")
        _sync(client, run, files_step, glob, recreate, prune)


def _engine(settings: Settings) -> AbstractContextManager[FilesStep]:
    """The engine's files step, in effect while the context lasts (Ray runs in it)."""
    if settings.ingest.engine == "ray":
        from milvus_rag.sync.ray import RayEngine

        return RayEngine(settings)  # raises ConfigError now when Ray is not installed
    return nullcontext(_local_files)


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
        with Writer(client, collection, embed, settings, report, run.progress) as run.writer:
            run.writer.view_ids = {i for stored in run.state.values() for i in stored.views}
            run.progress.start(len(listing.files))
            files_step(run)
            run.writer.finish()
        if prune:
            seen = {item.path for item in listing.files}
            for path, stored in run.state.items():
                if path in seen or (glob and not glob_match(path, glob)):
                    continue
                delete_ids(client, collection, sorted(stored.ids))
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
            flush_collection(client, collection)


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


def _limits(settings: Settings) -> Any:
    from milvus_rag.loaders.sources import SourceLimits

    return SourceLimits.from_settings(settings.ingest)
