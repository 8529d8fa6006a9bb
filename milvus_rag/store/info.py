"""What a server and a collection are: the server's version and capabilities (BM25,
filter templates, the scope field), a collection's fields and analyzer, and its counts
(chunks and their views) as every command says them."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from milvus_rag.schema import SCOPE_MAX_LENGTH, SPARSE_FIELD, TEXT_FIELD, VIEW_FIELD
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD
from milvus_rag.store.connection import lite_engine

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = [
    "TEXT_VIEW",
    "chunk_count",
    "count_chunks",
    "count_entities",
    "has_sparse_field",
    "scope_field_options",
    "scope_is_partition_key",
    "stored_analyzer",
    "supports_bm25",
    "supports_filter_templates",
    "takes_concurrent_writes",
    "upsert_misroutes",
    "views_note",
]


#: The ``view`` of a row holding a chunk's own text. A chunk may have other views (the
#: markdown splitter embeds a question heading apart): extra rows, counted as views.
TEXT_VIEW = "text"
_QUESTION_VIEW = "question"


def _version_string(client: MilvusClient) -> str | None:
    """What the server says its version is; ``None`` when it does not answer (Milvus
    Lite 2.x answers ``UNIMPLEMENTED``, Milvus Lite 3.x says ``milvus_lite-3.2.2``)."""
    rpc_log = logging.getLogger("pymilvus.decorators")
    level = rpc_log.level
    rpc_log.setLevel(logging.CRITICAL)  # Milvus Lite 2.5 answers UNIMPLEMENTED, logged at ERROR
    try:
        return str(client.get_server_version())
    except Exception:
        return None
    finally:
        rpc_log.setLevel(level)


def _server_version(client: MilvusClient) -> tuple[int, int] | None:
    """(major, minor) of a Milvus server; ``None`` for Milvus Lite or when unknown."""
    import re

    version = _version_string(client)
    if version is None or version.startswith("milvus_lite"):
        return None
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def takes_concurrent_writes(client: MilvusClient) -> bool:
    """True when the engine stores inserts sent from several threads at once: Milvus
    servers and Milvus Lite 2.x (the compiled engine) do; Milvus Lite 3.x (pure Python)
    numbers its writes without a lock, so it gets one at a time."""
    version = _version_string(client)
    return version is None or not version.startswith("milvus_lite")


def supports_bm25(client: MilvusClient) -> bool:
    """True when the server has Milvus's BM25 function (Milvus >= 2.5, Milvus Lite)."""
    version = _server_version(client)
    return version is None or version >= (2, 5)


def scope_field_options(client: MilvusClient) -> dict[str, Any] | None:
    """How a new collection declares the scope field (:mod:`milvus_rag.scopes`), or None
    to keep it a dynamic field.

    A Milvus server: the partition key, so that a scope's search, query or delete
    touches only its partitions; with a default value (:data:`DEFAULT_SCOPE`) from
    Milvus 2.4, which has default values. Older servers refuse a row without the
    field: every write milvus-rag makes fills it (ingest, uploads, migrate, and the
    langchain-milvus store's ``add_texts`` / ``add_documents``, see
    :mod:`~milvus_rag.store.vectorstore`). Milvus 2.3.5 filters dynamic fields of a
    partition-keyed collection in searches, queries, query iterators and deletes; its
    upserts put rows in the wrong partition, so there an upsert is a delete and an
    insert (:func:`upsert_misroutes`).

    Milvus Lite 3.x: the partition key, with the default value. Milvus Lite 2.5.1
    keeps a dynamic field, filtered the same way: its engine dies on a row that leaves
    a defaulted field out and cannot filter a dynamic field of a partition-keyed
    collection in a query iterator.

    A collection whose scope is a dynamic field (made before, or by Milvus Lite 2.5.1)
    is read and written the same way: the filter is the same expression.
    """
    options: dict[str, Any] = {"max_length": SCOPE_MAX_LENGTH, "is_partition_key": True}
    version = _server_version(client)
    if version is not None:
        if version >= (2, 4):
            options["default_value"] = DEFAULT_SCOPE
        return options
    if not (lite_engine() or "").startswith("3."):
        return None
    options["default_value"] = DEFAULT_SCOPE
    return options


def scope_is_partition_key(client: MilvusClient, collection: str) -> bool:
    """True when ``collection`` declares the scope field as its partition key."""
    for field in client.describe_collection(collection).get("fields", []):
        if field.get("name") == SCOPE_FIELD:
            return bool(field.get("is_partition_key"))
    return False


def upsert_misroutes(client: MilvusClient, collection: str) -> bool:
    """True when an upsert into ``collection`` would put rows in the wrong partition: a
    Milvus server before 2.4 hashes another field than the partition key for an upsert
    (milvus-io/milvus#30607, fixed in 2.4), so a scope's search misses the row. Write
    such rows with a delete and an insert."""
    version = _server_version(client)
    return version is not None and version < (2, 4) and scope_is_partition_key(client, collection)


def supports_filter_templates(client: MilvusClient) -> bool:
    """True on servers with filter templating (Milvus >= 2.5); Milvus Lite has none."""
    version = _server_version(client)
    return version is not None and version >= (2, 5)


def has_sparse_field(client: MilvusClient, collection: str) -> bool:
    """True when the collection carries the BM25 ``sparse`` field (hybrid mode)."""
    fields = client.describe_collection(collection).get("fields", [])
    return any(field.get("name") == SPARSE_FIELD for field in fields)


def stored_analyzer(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The ``analyzer_params`` of the collection's text field (``None`` when unset)."""
    for field in client.describe_collection(collection).get("fields", []):
        if field.get("name") == TEXT_FIELD:
            value = field.get("params", {}).get("analyzer_params")
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return None
            return value if isinstance(value, dict) else None
    return None


def count_entities(client: MilvusClient, collection: str) -> int:
    """Number of chunks stored (0 when the collection does not exist)."""
    if not client.has_collection(collection):
        return 0
    rows = client.query(collection, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def count_chunks(client: MilvusClient, collection: str) -> tuple[int, int]:
    """``(chunks, views)`` stored: a chunk's other views (its question heading, embedded
    apart) are rows of their own, counted as views, not chunks (0, 0 without a collection).
    """
    from milvus_rag.filters import eq

    rows = count_entities(client, collection)
    if rows == 0:
        return 0, 0
    found = client.query(
        collection, filter=str(eq(VIEW_FIELD, _QUESTION_VIEW)), output_fields=["count(*)"]
    )
    views = int(found[0]["count(*)"]) if found else 0
    return rows - views, views


def views_note(views: int) -> str:
    """`` (+53 question views)`` after a number of chunks (nothing without views)."""
    if not views:
        return ""
    return f" (+{views} question view{'' if views == 1 else 's'})"


def chunk_count(chunks: int, views: int = 0) -> str:
    """Chunks as every command and route says them: ``61 chunks (+53 question views)``."""
    return f"{chunks} chunk{'' if chunks == 1 else 's'}{views_note(views)}"
