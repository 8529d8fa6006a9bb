"""The configured collection as a langchain-milvus ``Milvus`` store
(:func:`open_vector_store`): checked first, then opened dense or hybrid.

The store fills the scope of what it writes: a text or document added through
LangChain (``add_texts``, ``add_documents``, ``upsert``, ``from_documents`` and their
async forms) without a ``scope`` in its metadata goes into the default scope
(:data:`~milvus_rag.scopes.DEFAULT_SCOPE`), as an ingest without ``--scope`` does. A
Milvus server before 2.4 refuses a row without its partition key (it has no default
values); everywhere, a scoped key's filter sees the row. Such a server also puts upserted
rows of a partition-keyed collection in the wrong partition: the store's ``upsert`` is a
delete and an insert there (its async ``aupsert`` is not, so use ``upsert``)."""

from __future__ import annotations

import logging
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rag.bm25 import analyzer_params
from milvus_rag.errors import EmptyCollectionError, MilvusRAGError, StoreError
from milvus_rag.schema import ID_FIELD, SPARSE_FIELD, TEXT_FIELD, VECTOR_FIELD
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD
from milvus_rag.store.collection import SPARSE_INDEX, dense_index, ensure_collection
from milvus_rag.store.connection import connect, connection_args, describe_uri, reason
from milvus_rag.store.info import upsert_misroutes

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_milvus import Milvus
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import Settings

__all__ = ["open_vector_store"]


def open_vector_store(
    settings: Settings,
    embeddings: MilvusModelEmbeddings,
    *,
    create: bool = False,
    recreate: bool = False,
    mode: str | None = None,
    client: MilvusClient | None = None,
) -> Milvus:
    """Open the configured collection as a langchain-milvus ``Milvus`` store.

    Checks it first with :func:`ensure_collection` (same arguments).

    Raises:
        EmbeddingMismatchError, SchemaMismatchError, EmptyCollectionError,
        StoreLockedError, StoreUnavailableError.
    """
    own = client is None
    milvus = settings.milvus
    lite_missing = milvus.is_lite and not Path(milvus.uri).expanduser().exists()
    if own and not (create or recreate) and lite_missing:  # connecting would create it
        raise EmptyCollectionError(
            f"there is no Milvus Lite database at {milvus.uri}, so no collection "
            f"{milvus.collection}: run `milvus-rag ingest SOURCE` first, or fix milvus.uri"
        )
    client = client if client is not None else connect(milvus)
    try:
        hybrid = ensure_collection(
            client, settings, embeddings, create=create, recreate=recreate, mode=mode
        )
    finally:
        if own:
            client.close()
    try:
        return _langchain_store(settings, embeddings, hybrid=hybrid)
    except MilvusRAGError:
        raise
    except Exception as exc:
        raise StoreError(f"{describe_uri(settings.milvus)}: {reason(exc)}") from exc


class _NoAsyncClientNotice(logging.Filter):
    """langchain-milvus 0.3 warns, outside an event loop, that its async client is not
    made: milvus-rag searches through the sync client only (in threads when async)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to initialize AsyncMilvusClient")


def _with_scope(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``metadata`` with its scope: the default scope when it names none.

    Raises:
        ConfigError: the scope it names is not a scope name (a string of letters,
            digits, ``_`` and ``-``): refused before anything is written.
    """
    from milvus_rag.keys import check_name

    filled = dict(metadata or {})
    if filled.get(SCOPE_FIELD) in (None, ""):
        filled[SCOPE_FIELD] = DEFAULT_SCOPE
    check_name(filled[SCOPE_FIELD], "metadata scope")
    return filled


@cache
def _scoped_milvus() -> type[Milvus]:
    """langchain-milvus's ``Milvus``, writing every row with its scope (:func:`_with_scope`).

    Every write of langchain-milvus 0.3 (``add_embeddings``, ``upsert`` and their async
    forms, which ``add_texts``, ``add_documents`` and ``from_texts`` call) builds its
    rows in ``_prepare_insert_list``: the one place the scope is filled.
    """
    from langchain_milvus import Milvus

    class ScopedMilvus(Milvus):
        def _prepare_insert_list(
            self,
            texts: list[str],
            embeddings: Any,
            metadatas: list[dict[str, Any]] | None = None,
            ids: list[str] | None = None,
            force_ids: bool = False,
        ) -> list[dict[str, Any]]:
            filled = [_with_scope(metadatas[i] if metadatas else None) for i in range(len(texts))]
            return super()._prepare_insert_list(texts, embeddings, filled, ids, force_ids)

        def upsert(
            self,
            ids: list[str] | None = None,
            documents: list[Document] | None = None,
            batch_size: int = 1000,
            timeout: float | None = None,
            **kwargs: Any,
        ) -> None:
            """A Milvus server before 2.4 puts upserted rows of a partition-keyed
            collection in the wrong partition: there, a delete and an insert."""
            if ids and documents and upsert_misroutes(self.client, self.collection_name):
                self.delete(ids=ids)
                self.add_documents(documents, ids=ids, batch_size=batch_size, timeout=timeout)
                return
            super().upsert(ids, documents, batch_size, timeout, **kwargs)

    return ScopedMilvus


def _langchain_store(settings: Settings, embeddings: Any, *, hybrid: bool) -> Milvus:
    from langchain_milvus import BM25BuiltInFunction

    Milvus = _scoped_milvus()
    _before_first_search()
    lc_log = logging.getLogger("langchain_milvus.vectorstores.milvus")
    if not any(isinstance(f, _NoAsyncClientNotice) for f in lc_log.filters):
        lc_log.addFilter(_NoAsyncClientNotice())
    dense = dense_index(settings)
    dense_search: dict[str, Any] = {"metric_type": settings.milvus.metric, "params": {}}
    common: dict[str, Any] = {
        "collection_name": settings.milvus.collection,
        "connection_args": connection_args(settings.milvus),
        "consistency_level": settings.milvus.consistency,
        "primary_field": ID_FIELD,
        "text_field": TEXT_FIELD,
        "enable_dynamic_field": True,
        "auto_id": False,
    }
    if not hybrid:
        return Milvus(
            embedding_function=embeddings,
            vector_field=VECTOR_FIELD,
            index_params=dense,
            search_params=dense_search,
            **common,
        )
    return Milvus(
        embedding_function=embeddings,
        builtin_function=BM25BuiltInFunction(
            input_field_names=TEXT_FIELD,
            output_field_names=SPARSE_FIELD,
            analyzer_params=analyzer_params(settings.retrieval.bm25_stop_words),
        ),
        vector_field=[VECTOR_FIELD, SPARSE_FIELD],
        index_params=[dense, SPARSE_INDEX],
        search_params=[
            dense_search,
            {"metric_type": "BM25", "params": {"drop_ratio_search": 0}},
        ],
        **common,
    )


_FIRST_SEARCH = threading.Lock()


def _before_first_search() -> None:
    """Run pymilvus's lazy ``scipy.sparse`` check now, once, under a lock.

    pymilvus loads ``scipy.sparse`` on its first search with ``exec_module``, outside
    Python's import lock: when two threads search first at once (a server's first
    concurrent requests), both execute the module and one fails with a circular-import
    ``AttributeError`` (a 500). A store is opened before it searches, so this runs first.
    """
    with _FIRST_SEARCH:
        try:
            from pymilvus.client.utils import SciPyHelper
        except ImportError:  # another pymilvus layout: nothing lazy to settle
            return
        SciPyHelper.is_scipy_sparse([])
