"""Copy a milvus-rag collection to another Milvus deployment (Milvus Lite -> a server).

Everything ingest stored travels: ids, texts, vectors, every metadata field, and
the embedding record, so the copy answers exactly like the original and later
ingests into it stay incremental. Vectors are copied, not recomputed. A hybrid
collection's BM25 field is rebuilt by the target's own BM25 function (with the
source's stop words); on a target without BM25 (Milvus before 2.5) the copy is
dense, after one warning.

Rows are upserted by id, so an interrupted migration is resumed by running it
again, and rerunning never duplicates anything. Rows the target already holds
and the source does not are kept (nothing stored is lost).

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.migrate import migrate

        settings = load_settings()  # milvus.uri: the Milvus Lite file
        target = settings.milvus.model_copy(update={"uri": "http://localhost:19530"})
        print(migrate(settings, target).summary())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import (
    ConfigError,
    EmbeddingMismatchError,
    EmptyCollectionError,
    MilvusRAGError,
    StoreError,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.settings import MilvusSettings, Settings

__all__ = ["MigrationReport", "migrate"]

_log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    """What a migration did."""

    source: str
    target: str
    collection: str
    hybrid: bool = False
    copied: int = 0
    source_count: int = 0
    target_count: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for humans."""
        mode = "hybrid" if self.hybrid else "dense"
        return (
            f"copied {self.copied} chunks of {self.collection} ({mode}) from {self.source} to "
            f"{self.target}; source holds {self.source_count}, target {self.target_count}; "
            f"{self.seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def migrate(
    settings: Settings,
    target: MilvusSettings,
    *,
    recreate: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy ``settings.milvus.collection`` to the deployment described by ``target``.

    Args:
        settings: the loaded settings; ``settings.milvus`` is the source.
        target: the target's ``milvus`` section (uri, token, collection, timeout).
        recreate: drop the target collection first.
        on_batch: called with the number of rows after each written batch.

    Raises:
        ConfigError: source and target are the same collection.
        EmptyCollectionError: the source collection does not exist.
        EmbeddingMismatchError: the target collection was built with another model.
        SchemaMismatchError: the target is dense and the source hybrid (use ``recreate``).
        StoreError subclasses: a deployment cannot be reached or refuses an operation.
    """
    from milvus_rag.store import connect, count_entities

    source = settings.milvus
    if _same_place(source, target):
        raise ConfigError(
            f"the migration target is the source itself ({target.uri}, collection "
            f"{target.collection}): give another URI or collection"
        )
    started = time.perf_counter()
    report = MigrationReport(source=source.uri, target=target.uri, collection=source.collection)
    src = connect(source)
    try:
        dst = connect(target)
        try:
            _copy(settings, target, src, dst, report, recreate, on_batch)
            report.source_count = count_entities(src, source.collection)
            report.target_count = count_entities(dst, target.collection)
        finally:
            dst.close()
    except MilvusRAGError:
        raise
    except Exception as exc:
        from milvus_rag.store import reason

        raise StoreError(f"migration to {target.uri} failed: {reason(exc)}") from exc
    finally:
        src.close()
    report.seconds = time.perf_counter() - started
    return report


def _same_place(source: MilvusSettings, target: MilvusSettings) -> bool:
    if source.collection != target.collection:
        return False
    if source.is_lite and target.is_lite:
        from pathlib import Path

        return Path(source.uri).expanduser().resolve() == Path(target.uri).expanduser().resolve()
    return source.uri.rstrip("/") == target.uri.rstrip("/")


def _copy(
    settings: Settings,
    target: MilvusSettings,
    src: MilvusClient,
    dst: MilvusClient,
    report: MigrationReport,
    recreate: bool,
    on_batch: Callable[[int], None] | None,
) -> None:
    from milvus_rag.store import (
        IngestLock,
        ensure_collection,
        flush_collection,
        has_sparse_field,
        load_collection,
    )

    name = settings.milvus.collection
    record = _source_identity(src, settings.milvus)
    identity = {key: value for key, value in record.items() if key != "metric"}
    target_settings = _target_settings(settings, target, src, record)
    mode = "hybrid" if has_sparse_field(src, name) else "dense"
    with IngestLock(dst, target_settings):
        try:
            report.hybrid = ensure_collection(
                dst, target_settings, lambda: identity, create=True, recreate=recreate, mode=mode
            )
        except EmbeddingMismatchError as exc:  # its advice is ingest's: give migrate's
            problem = str(exc).partition("; ")[0]
            raise EmbeddingMismatchError(
                f"target {problem}; `milvus-rag migrate --recreate` replaces it with the copy"
            ) from exc
        load_collection(src, name)
        _copy_rows(src, dst, settings, target.collection, report, on_batch)
        flush_collection(dst, target.collection)


def _source_identity(src: MilvusClient, source: MilvusSettings) -> dict[str, Any]:
    """The embedding record of the source collection.

    Raises:
        EmptyCollectionError: the collection does not exist.
        EmbeddingMismatchError: it was not created by milvus-rag (no record).
    """
    from milvus_rag.store import collection_identity, has_collection

    name = source.collection
    if not has_collection(src, name):
        raise EmptyCollectionError(
            f"collection {name} does not exist in {source.uri}: nothing to migrate"
        )
    record = collection_identity(src, name)
    if record is None:
        raise EmbeddingMismatchError(
            f"collection {name} was not created by milvus-rag (no embedding record); "
            "only milvus-rag collections can be migrated"
        )
    return record


def _target_settings(
    settings: Settings, target: MilvusSettings, src: MilvusClient, record: dict[str, Any]
) -> Settings:
    """The settings the target collection is built with: ``target``, the source's metric
    and its BM25 stop words."""
    name = settings.milvus.collection
    retrieval = settings.retrieval.model_copy(update={"bm25_stop_words": _stop_words(src, name)})
    return settings.model_copy(
        update={
            "milvus": target.model_copy(update={"metric": record.get("metric", "IP")}),
            "retrieval": retrieval,
        }
    )


def _copy_rows(
    src: MilvusClient,
    dst: MilvusClient,
    settings: Settings,
    target_collection: str,
    report: MigrationReport,
    on_batch: Callable[[int], None] | None,
) -> None:
    """Every row of the source upserted into the target, a page at a time (``write_batch``),
    with up to ``write_concurrency`` pages being written while the next is read."""
    from functools import partial

    from milvus_rag.scopes import DEFAULT_SCOPE
    from milvus_rag.store import SCOPE_FIELD, SPARSE_FIELD, RowWriter, iter_rows

    def copied(count: int) -> None:
        report.copied += count
        if on_batch is not None:
            on_batch(count)

    in_flight = settings.ingest.write_concurrency
    pages = iter_rows(src, settings.milvus.collection, page=settings.ingest.write_batch)
    with RowWriter(dst, target_collection, in_flight=in_flight, upsert=True) as writer:
        for rows in pages:
            for row in rows:
                row.pop(SPARSE_FIELD, None)  # the target's BM25 function rebuilds it
                row.setdefault(SCOPE_FIELD, DEFAULT_SCOPE)  # rows stored before scopes
            writer.write(rows, done=partial(copied, len(rows)))


def _stop_words(client: MilvusClient, collection: str) -> str | list[str]:
    """The source's BM25 stop words, so that the copy analyzes text the same way."""
    from milvus_rag.store import stored_analyzer

    for step in (stored_analyzer(client, collection) or {}).get("filter", []):
        if isinstance(step, dict) and step.get("type") == "stop":
            return list(step.get("stop_words", []))
    return "none"
