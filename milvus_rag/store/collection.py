"""The collection: milvus-rag's schema and indexes, its creation (and the completion of a
creation killed half-way), drops, and the check on every open that it was built with the
current embedding model, dimension and metric (:func:`ensure_collection`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rag.bm25 import analyzer_params
from milvus_rag.errors import (
    EmbeddingMismatchError,
    EmptyCollectionError,
    MilvusRAGError,
    SchemaMismatchError,
    StoreError,
)
from milvus_rag.schema import ID_FIELD, SPARSE_FIELD, TEXT_FIELD, VECTOR_FIELD
from milvus_rag.scopes import SCOPE_FIELD
from milvus_rag.store.connection import connect, describe_uri, reason
from milvus_rag.store.info import (
    count_entities,
    has_sparse_field,
    scope_field_options,
    stored_analyzer,
    supports_bm25,
)
from milvus_rag.store.loading import load_collection
from milvus_rag.store.meta import (
    IDENTITY_PROPERTY,
    collection_identity,
    meta_forget,
    meta_rows,
    property_record,
    record_identity,
    record_key,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import MilvusSettings, Settings

__all__ = [
    "SPARSE_INDEX",
    "check_identity",
    "connect_existing",
    "create_collection",
    "dense_index",
    "drop_collection",
    "ensure_collection",
]

_log = logging.getLogger(__name__)


ID_MAX_LENGTH = 64
TEXT_MAX_BYTES = 65535


def drop_collection(client: MilvusClient, collection: str) -> None:
    """Drop ``collection`` if it exists, and forget milvus-rag's records of it."""
    if client.has_collection(collection):
        client.drop_collection(collection)
    meta_forget(client, collection)


def dense_index(settings: Settings) -> dict[str, Any]:
    return {
        "index_type": settings.milvus.index_type,
        "metric_type": settings.milvus.metric,
        "params": {},
    }


# Milvus Lite accepts only drop_ratio_build=0.
SPARSE_INDEX: dict[str, Any] = {
    "index_type": "SPARSE_INVERTED_INDEX",
    "metric_type": "BM25",
    "params": {"drop_ratio_build": 0},
}


def _index_params(client: MilvusClient, settings: Settings, hybrid: bool) -> Any:
    params = client.prepare_index_params()
    params.add_index(field_name=VECTOR_FIELD, **dense_index(settings))
    if hybrid:
        params.add_index(field_name=SPARSE_FIELD, **SPARSE_INDEX)
    return params


def create_collection(
    client: MilvusClient,
    settings: Settings,
    identity: dict[str, Any],
    *,
    hybrid: bool,
) -> None:
    """Create the collection with milvus-rag's schema and record ``identity``."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
    text_options: dict[str, Any] = {"max_length": TEXT_MAX_BYTES}
    if hybrid:
        text_options["enable_analyzer"] = True
        text_options["analyzer_params"] = analyzer_params(settings.retrieval.bm25_stop_words)
    schema.add_field(TEXT_FIELD, DataType.VARCHAR, **text_options)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(identity["dim"]))
    scope = scope_field_options(client)
    if scope is not None:
        schema.add_field(SCOPE_FIELD, DataType.VARCHAR, **scope)
    if hybrid:
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=[TEXT_FIELD],
                output_field_names=[SPARSE_FIELD],
            )
        )
    name = settings.milvus.collection
    # The record goes first: a kill at any instant leaves no collection (the next run
    # creates it, replacing the record), or a collection with its record.
    meta_forget(client, name)
    record_identity(client, name, dict(identity, metric=settings.milvus.metric))
    client.create_collection(
        name,
        schema=schema,
        index_params=_index_params(client, settings, hybrid),
        consistency_level=settings.milvus.consistency,
    )


def _finish_indexes(
    client: MilvusClient, settings: Settings, collection: str, identity: dict[str, Any]
) -> None:
    """Create the indexes a creation killed half-way did not (a collection without its
    index cannot be loaded); never touches a collection without milvus-rag's schema."""
    if not _milvus_rag_schema(client, collection, int(identity.get("dim", -1))):
        return
    fields = {f.get("name") for f in client.describe_collection(collection).get("fields", [])}
    wanted = {VECTOR_FIELD: dense_index(settings), SPARSE_FIELD: SPARSE_INDEX}
    missing = [
        f for f in wanted if f in fields and not client.list_indexes(collection, field_name=f)
    ]
    if missing:
        params = client.prepare_index_params()
        for field in missing:
            params.add_index(field_name=field, **wanted[field])
        client.create_index(collection, params)


def _milvus_rag_schema(client: MilvusClient, collection: str, dim: int) -> bool:
    """True when ``collection`` has milvus-rag's fields, its vectors ``dim`` wide."""
    from pymilvus import DataType

    described = client.describe_collection(collection)
    fields = {f.get("name"): f for f in described.get("fields", [])}
    key, text, vector = (fields.get(n) for n in (ID_FIELD, TEXT_FIELD, VECTOR_FIELD))
    return (
        key is not None
        and bool(key.get("is_primary"))
        and key.get("type") == DataType.VARCHAR
        and text is not None
        and text.get("type") == DataType.VARCHAR
        and vector is not None
        and vector.get("type") == DataType.FLOAT_VECTOR
        and int((vector.get("params") or {}).get("dim", -1)) == dim
        and bool(described.get("enable_dynamic_field"))
    )


def _unfinished_creation(client: MilvusClient, collection: str, identity: dict[str, Any]) -> bool:
    """True for an empty collection with milvus-rag's schema and no embedding record: a
    creation by a milvus-rag killed before it recorded the model (releases before the
    record moved to :data:`META_COLLECTION` wrote it second). Nothing in it can belong
    to another model, so it is finished, not refused. A collection that holds chunks
    and no record is refused: its vectors' model cannot be told."""
    if not _milvus_rag_schema(client, collection, int(identity.get("dim", -1))):
        return False
    load_collection(client, collection)
    return count_entities(client, collection) == 0


def check_identity(client: MilvusClient, settings: Settings, identity: dict[str, Any]) -> None:
    """Refuse a collection built by another embedding model, dimension or metric.

    An empty collection with milvus-rag's schema and no record (an unfinished
    creation) passes; :func:`ensure_collection` records it when it writes.
    """
    name = settings.milvus.collection
    stored = collection_identity(client, name)
    if stored is None:
        if _unfinished_creation(client, name, identity):
            return
        if _milvus_rag_schema(client, name, int(identity.get("dim", -1))):
            raise EmbeddingMismatchError(
                f"collection {name} holds chunks but no embedding record, so the model that "
                "built them is unknown; recreate it (ingest --recreate, or migrate --recreate)"
            )
        raise EmbeddingMismatchError(
            f"collection {name} was not created by milvus-rag (no embedding record); "
            "re-ingest with --recreate"
        )
    wanted = dict(identity, metric=settings.milvus.metric)
    for key in sorted(set(stored) | set(wanted)):
        if stored.get(key) != wanted.get(key):
            raise EmbeddingMismatchError(
                f"collection {name} was built with {key}={stored.get(key)!r} but the current "
                f"settings give {key}={wanted.get(key)!r}; re-ingest with --recreate "
                "(or restore the embedding settings it was built with)"
            )


def ensure_collection(
    client: MilvusClient,
    settings: Settings,
    embeddings: MilvusModelEmbeddings | Callable[[], dict[str, Any]],
    *,
    create: bool = False,
    recreate: bool = False,
    mode: str | None = None,
) -> bool:
    """Check (or create) the configured collection for ``embeddings``; True when hybrid.

    The one place a collection is checked or created: ingest, migrate and the
    retriever all come here.

    Args:
        client: an open client (see :func:`connect`).
        settings: the loaded settings (``milvus.collection`` names the collection).
        embeddings: the embedding model the collection is (to be) built with, or a
            function returning its identity record (migrate copies the source's).
        create: create the collection when missing (ingest); otherwise a missing
            collection raises :class:`EmptyCollectionError`.
        recreate: drop the collection first (implies ``create``); the model is
            loaded before anything is dropped.
        mode: ``dense`` or ``hybrid``; defaults to ``settings.retrieval.mode``.
            Hybrid falls back to dense, with one warning, on servers without BM25,
            and, when ``mode`` is not given, on a dense collection (one warning says
            hybrid needs a re-ingest); a ``mode="hybrid"`` given raises instead.

    Raises:
        EmbeddingMismatchError, SchemaMismatchError, EmptyCollectionError, StoreError.
    """
    # retrieval.mode (hybrid by default) adapts to a dense collection; a mode passed does not.
    explicit = mode is not None
    mode = mode or settings.retrieval.mode
    identify = embeddings if callable(embeddings) else embeddings.identity
    try:
        return _check_or_create(
            client,
            settings,
            identify,
            create=create,
            recreate=recreate,
            hybrid=mode == "hybrid",
            explicit=explicit,
        )
    except MilvusRAGError:
        raise
    except Exception as exc:
        raise StoreError(f"{describe_uri(settings.milvus)}: {reason(exc)}") from exc


def _check_or_create(
    client: MilvusClient,
    settings: Settings,
    identify: Callable[[], dict[str, Any]],
    *,
    create: bool,
    recreate: bool,
    hybrid: bool,
    explicit: bool,
) -> bool:
    """:func:`ensure_collection`'s steps: refuse a missing collection (unless creating),
    load the model, drop (``recreate``), then check the collection or create it."""
    name = settings.milvus.collection
    exists = client.has_collection(name)
    if not exists and not (create or recreate):
        raise EmptyCollectionError(
            f"collection {name} does not exist in {describe_uri(settings.milvus)}: "
            "run `milvus-rag ingest SOURCE` first"
        )
    identity = identify()  # loads the model: fail here before dropping anything
    if recreate and exists:
        drop_collection(client, name)
        exists = False
    if hybrid and not supports_bm25(client):
        _log.warning(
            "%s has no BM25 function (Milvus before 2.5): hybrid search falls back to dense",
            describe_uri(settings.milvus),
        )
        hybrid = False
    if not exists:
        create_collection(client, settings, identity, hybrid=hybrid)
        return hybrid
    return _open_existing(
        client, settings, identity, create=create, hybrid=hybrid, explicit=explicit
    )


def _open_existing(
    client: MilvusClient,
    settings: Settings,
    identity: dict[str, Any],
    *,
    create: bool,
    hybrid: bool,
    explicit: bool,
) -> bool:
    """Finish, check and load an existing collection (and complete its record before a
    write); True when it is searched (or written) hybrid."""
    name = settings.milvus.collection
    _finish_indexes(client, settings, name, identity)
    check_identity(client, settings, identity)
    load_collection(client, name)
    if create:
        _complete_record(client, settings, identity)
    if hybrid and not has_sparse_field(client, name):
        _dense_fallback(name, create=create, explicit=explicit)
        hybrid = False
    if hybrid and create:
        _warn_if_analyzer_differs(client, settings)
    return hybrid


def _dense_fallback(name: str, *, create: bool, explicit: bool) -> None:
    """A dense collection asked for hybrid search: refused when ``mode`` was given, else
    used dense with one warning."""
    if explicit:
        raise SchemaMismatchError(
            f"collection {name} was built for dense search and has no BM25 field; "
            "recreate it for hybrid search (ingest --recreate --mode hybrid, or "
            "migrate --recreate)"
        )
    _log.warning(
        "collection %s was built for dense search: it is %s dense; hybrid, the "
        "default mode, needs a re-ingest (ingest --recreate)",
        name,
        "written" if create else "searched",
    )


def _complete_record(client: MilvusClient, settings: Settings, identity: dict[str, Any]) -> None:
    """Before a write: record an unfinished creation's identity, and move a record kept in
    the collection's properties (older milvus-rag) to :data:`META_COLLECTION`."""
    name = settings.milvus.collection
    if record_key(name, "embedding") in meta_rows(client, name, "embedding"):
        return
    record = property_record(client, name, IDENTITY_PROPERTY)
    if record is None:
        _log.info("collection %s: completing its creation (no embedding record yet)", name)
        record = dict(identity, metric=settings.milvus.metric)
    record_identity(client, name, record)


def _warn_if_analyzer_differs(client: MilvusClient, settings: Settings) -> None:
    """Log once when a hybrid collection was built with other BM25 stop words.

    The analyzer is part of the collection schema: a changed
    ``retrieval.bm25_stop_words`` applies only after ``--recreate``.
    """
    name = settings.milvus.collection
    stored = stored_analyzer(client, name)
    wanted = analyzer_params(settings.retrieval.bm25_stop_words)
    if stored is not None and stored != wanted:
        _log.warning(
            "collection %s was built with other BM25 stop words than retrieval.bm25_stop_words; "
            "the new setting applies after ingest --recreate --mode hybrid",
            name,
        )


def connect_existing(milvus: MilvusSettings) -> MilvusClient:
    """Connect to a collection that must exist already, and load it.

    Unlike :func:`connect`, never creates a Milvus Lite file.

    Raises:
        EmptyCollectionError: there is no such database or collection.
        StoreLockedError, StoreUnavailableError: as :func:`connect`.
    """
    if milvus.is_lite and not Path(milvus.uri).expanduser().exists():
        raise EmptyCollectionError(
            f"there is no Milvus Lite database at {milvus.uri}: run `milvus-rag ingest SOURCE` "
            "first, or fix milvus.uri"
        )
    client = connect(milvus)
    try:
        if not client.has_collection(milvus.collection):
            raise EmptyCollectionError(
                f"collection {milvus.collection} does not exist in {describe_uri(milvus)}: "
                "run `milvus-rag ingest SOURCE` first"
            )
        load_collection(client, milvus.collection)
    except MilvusRAGError:
        client.close()
        raise
    except Exception as exc:
        client.close()
        raise StoreError(f"{describe_uri(milvus)}: {reason(exc)}") from exc
    return client
