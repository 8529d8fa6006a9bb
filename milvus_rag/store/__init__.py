"""The store: the one place that calls a Milvus client, and the langchain-milvus vector store.

Owns three things the rest of the package relies on:

* the collection schema (``id`` primary key, ``text``, ``vector``, metadata in
  the dynamic field; in hybrid mode a ``sparse`` field filled by Milvus's own
  BM25 function),
* the embedding identity recorded on the collection (model, dimension, metric)
  and checked on every open, so vectors of two models are never mixed,
* clear errors for Milvus Lite's one-process rule and unreachable servers.

The modules, each on those above it (no import cycle):

* :mod:`~milvus_rag.store.connection`: opening a client (``connect``), Milvus Lite's
  engines and lock files, one-line reasons for errors;
* :mod:`~milvus_rag.store.loading`: loading a collection, with retries;
* :mod:`~milvus_rag.store.meta`: milvus-rag's records in :data:`META_COLLECTION` (the
  embedding record, ingest runs, the ingest lock's lease);
* :mod:`~milvus_rag.store.info`: the server's version and capabilities, a collection's
  fields, its counts;
* :mod:`~milvus_rag.store.rows`: every read and write of rows (inserts, deletes,
  iteration, fetches, searches);
* :mod:`~milvus_rag.store.users`: Milvus users and roles;
* :mod:`~milvus_rag.store.collection`: the schema, creation, drops and the identity
  check on open (``ensure_collection``);
* :mod:`~milvus_rag.store.documents`: the source files stored and the ingest records;
* :mod:`~milvus_rag.store.lock`: the ingest lock;
* :mod:`~milvus_rag.store.vectorstore`: the langchain-milvus store (``open_vector_store``).

The names below are imported from here (``from milvus_rag.store import connect``); the
schema's field names come from :mod:`milvus_rag.schema`.

Example:
    .. code-block:: python

        from milvus_rag import MilvusModelEmbeddings, load_settings
        from milvus_rag.store import open_vector_store

        settings = load_settings()
        embeddings = MilvusModelEmbeddings(model_dir="../shared/models/all-MiniLM-L6-v2-onnx")
        store = open_vector_store(settings, embeddings)
        hits = store.similarity_search_with_score("How is data stored in milvus?", k=3)
"""

from __future__ import annotations

from milvus_rag.schema import (
    BOOKKEEPING_FIELDS,
    CHUNK_COUNT_FIELD,
    CHUNK_SET_FIELD,
    CHUNKER_FIELD,
    FORMAT_FIELD,
    HEADING_FIELD,
    ID_FIELD,
    ORIGIN_FIELD,
    POSITION_FIELD,
    SOURCE_FIELD,
    SOURCE_HASH_FIELD,
    SPARSE_FIELD,
    TEXT_FIELD,
    VECTOR_FIELD,
    VIEW_FIELD,
)
from milvus_rag.scopes import SCOPE_FIELD
from milvus_rag.store.collection import (
    check_identity,
    connect_existing,
    create_collection,
    drop_collection,
    ensure_collection,
)
from milvus_rag.store.connection import (
    connect,
    lite_engine,
    lite_file_engine,
    lite_serve_command,
    reason,
)
from milvus_rag.store.documents import (
    INGESTS_PROPERTY,
    StoredSource,
    delete_sources,
    ingest_records,
    list_sources,
    record_ingest,
)
from milvus_rag.store.info import (
    TEXT_VIEW,
    chunk_count,
    count_chunks,
    count_entities,
    has_sparse_field,
    scope_field_options,
    scope_is_partition_key,
    stored_analyzer,
    supports_bm25,
    supports_filter_templates,
    takes_concurrent_writes,
    views_note,
)
from milvus_rag.store.loading import LOAD_ATTEMPTS, load_collection
from milvus_rag.store.lock import (
    LOCK_LEASE_SECONDS,
    LOCK_OWNERLESS_SECONDS,
    IngestLock,
    LockStatus,
    ingest_lock_status,
    release_ingest_lock,
)
from milvus_rag.store.meta import (
    IDENTITY_PROPERTY,
    META_COLLECTION,
    collection_identity,
    record_identity,
)
from milvus_rag.store.rows import (
    RowWriter,
    delete_ids,
    fetch_vectors,
    flush_collection,
    has_collection,
    insert_rows,
    iter_rows,
    list_collections,
    metadata_keys,
    row_fields,
    search_rows,
    upsert_rows,
)
from milvus_rag.store.users import grant_user
from milvus_rag.store.vectorstore import open_vector_store

__all__ = [
    "BOOKKEEPING_FIELDS",
    "CHUNKER_FIELD",
    "CHUNK_COUNT_FIELD",
    "CHUNK_SET_FIELD",
    "FORMAT_FIELD",
    "HEADING_FIELD",
    "IDENTITY_PROPERTY",
    "ID_FIELD",
    "INGESTS_PROPERTY",
    "LOAD_ATTEMPTS",
    "LOCK_LEASE_SECONDS",
    "LOCK_OWNERLESS_SECONDS",
    "META_COLLECTION",
    "ORIGIN_FIELD",
    "POSITION_FIELD",
    "SCOPE_FIELD",
    "SOURCE_FIELD",
    "SOURCE_HASH_FIELD",
    "SPARSE_FIELD",
    "TEXT_FIELD",
    "TEXT_VIEW",
    "VECTOR_FIELD",
    "VIEW_FIELD",
    "IngestLock",
    "LockStatus",
    "RowWriter",
    "StoredSource",
    "check_identity",
    "chunk_count",
    "collection_identity",
    "connect",
    "connect_existing",
    "count_chunks",
    "count_entities",
    "create_collection",
    "delete_ids",
    "delete_sources",
    "drop_collection",
    "ensure_collection",
    "fetch_vectors",
    "flush_collection",
    "grant_user",
    "has_collection",
    "has_sparse_field",
    "ingest_lock_status",
    "ingest_records",
    "insert_rows",
    "iter_rows",
    "list_collections",
    "list_sources",
    "lite_engine",
    "lite_file_engine",
    "lite_serve_command",
    "load_collection",
    "metadata_keys",
    "open_vector_store",
    "reason",
    "record_identity",
    "record_ingest",
    "release_ingest_lock",
    "row_fields",
    "scope_field_options",
    "scope_is_partition_key",
    "search_rows",
    "stored_analyzer",
    "supports_bm25",
    "supports_filter_templates",
    "takes_concurrent_writes",
    "upsert_rows",
    "views_note",
]
