"""The configured collection as a langchain-milvus ``Milvus`` store
(:func:`open_vector_store`): checked first, then opened dense or hybrid."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rag.bm25 import analyzer_params
from milvus_rag.errors import EmptyCollectionError, MilvusRAGError, StoreError
from milvus_rag.schema import ID_FIELD, SPARSE_FIELD, TEXT_FIELD, VECTOR_FIELD
from milvus_rag.store.collection import SPARSE_INDEX, dense_index, ensure_collection
from milvus_rag.store.connection import connect, connection_args, describe_uri, reason

if TYPE_CHECKING:
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


def _langchain_store(settings: Settings, embeddings: Any, *, hybrid: bool) -> Milvus:
    from langchain_milvus import BM25BuiltInFunction, Milvus

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
