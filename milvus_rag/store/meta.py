"""milvus-rag's records about each collection, kept in the metadata collection
(:data:`META_COLLECTION`): the embedding record, the ingest runs, the ingest lock's lease.

A record is a row: its key (``COLLECTION:KIND[:NAME]``, see :func:`record_key`), the
collection it is about, its kind and a JSON payload. Records an older milvus-rag kept in
collection properties are read as a fallback (:func:`property_record`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import StoreError
from milvus_rag.store.loading import load_collection

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = [
    "IDENTITY_PROPERTY",
    "META_COLLECTION",
    "collection_identity",
    "meta_delete",
    "meta_forget",
    "meta_rows",
    "meta_write",
    "property_record",
    "record_identity",
    "record_key",
]

#: The collection property where milvus-rag kept the embedding record before
#: :data:`META_COLLECTION` (read as a fallback).
IDENTITY_PROPERTY = "milvus_rag.embedding"

#: The collection beside the data (one per database) that holds milvus-rag's records
#: about each collection: its embedding record, its ingest runs, its ingest lock's lease.
#: Every engine has collections, upsert and query (Milvus Lite 2.5 has no collection
#: properties), so this works on all of them.
META_COLLECTION = "milvus_rag_meta"
_META_KEY = "key"
_META_COLLECTION_FIELD = "collection"
_META_KIND = "kind"
_META_PAYLOAD = "payload"
_META_VECTOR = "v"  # Milvus requires a vector field
_META_FIELDS = [_META_KEY, _META_COLLECTION_FIELD, _META_KIND, _META_PAYLOAD]
_META_MAX_PAYLOAD = 65535


def record_key(collection: str, kind: str, name: str = "") -> str:
    """The key of a record: ``COLLECTION:KIND``, or ``COLLECTION:KIND:NAME``."""
    return f"{collection}:{kind}:{name}" if name else f"{collection}:{kind}"


def _ensure_meta(client: MilvusClient) -> None:
    """Create (or finish creating) and load the metadata collection.

    Each step is checked on its own, so a process killed half-way through a
    creation leaves something the next call completes.
    """
    from pymilvus import DataType

    if not client.has_collection(META_COLLECTION):
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_META_KEY, DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field(_META_COLLECTION_FIELD, DataType.VARCHAR, max_length=256)
        schema.add_field(_META_KIND, DataType.VARCHAR, max_length=32)
        schema.add_field(_META_PAYLOAD, DataType.VARCHAR, max_length=_META_MAX_PAYLOAD)
        schema.add_field(_META_VECTOR, DataType.FLOAT_VECTOR, dim=2)
        try:
            client.create_collection(META_COLLECTION, schema=schema, consistency_level="Strong")
        except Exception:
            if not client.has_collection(META_COLLECTION):  # not a lost race: a real failure
                raise
    if not client.list_indexes(META_COLLECTION):
        params = client.prepare_index_params()
        params.add_index(field_name=_META_VECTOR, index_type="FLAT", metric_type="L2")
        try:  # no wait for the build (pymilvus polls every 0.5 s): loading waits for it
            client.create_index(META_COLLECTION, params, sync=False)
        except Exception:
            if not client.list_indexes(META_COLLECTION):
                raise
    load_collection(client, META_COLLECTION)


def meta_rows(
    client: MilvusClient, collection: str, kind: str | None = None
) -> dict[str, dict[str, Any]]:
    """The records of ``collection`` (of one ``kind``): key -> payload."""
    from milvus_rag.filters import all_of, eq

    if not client.has_collection(META_COLLECTION):
        return {}
    _ensure_meta(client)
    expr = all_of(eq(_META_COLLECTION_FIELD, collection), kind and eq(_META_KIND, kind))
    rows = client.query(
        META_COLLECTION,
        filter=str(expr),
        output_fields=_META_FIELDS,
        consistency_level="Strong",
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            payload = json.loads(row[_META_PAYLOAD])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(payload, dict):
            out[str(row[_META_KEY])] = payload
    return out


def meta_write(client: MilvusClient, collection: str, records: dict[str, tuple[str, Any]]) -> None:
    """Upsert records: key -> (kind, JSON-ready payload)."""
    if not records:
        return
    _ensure_meta(client)
    rows = []
    for key, (kind, payload) in records.items():
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        if len(text.encode()) > _META_MAX_PAYLOAD:
            raise StoreError(f"a milvus-rag record of collection {collection} is too large")
        rows.append(
            {
                _META_KEY: key,
                _META_COLLECTION_FIELD: collection,
                _META_KIND: kind,
                _META_PAYLOAD: text,
                _META_VECTOR: [0.0, 0.0],
            }
        )
    client.upsert(META_COLLECTION, rows)


def meta_delete(client: MilvusClient, keys: list[str]) -> None:
    if keys and client.has_collection(META_COLLECTION):
        _ensure_meta(client)
        client.delete(META_COLLECTION, ids=keys)


def meta_forget(client: MilvusClient, collection: str) -> None:
    """Delete the records of ``collection`` (it is dropped, or about to be created);
    its ingest lock's lease stays with the lock."""
    keys = [key for key in meta_rows(client, collection) if key != record_key(collection, "lock")]
    meta_delete(client, sorted(keys))


def collection_identity(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The embedding record of ``collection``, or ``None`` if it has none.

    Read from the metadata collection (:data:`META_COLLECTION`); a collection made by
    an older milvus-rag keeps it in its properties, read as a fallback.
    """
    record = meta_rows(client, collection).get(record_key(collection, "embedding"))
    if record is None:
        record = property_record(client, collection, IDENTITY_PROPERTY)
    return record if record else None


def record_identity(client: MilvusClient, collection: str, record: dict[str, Any]) -> None:
    """Store ``record`` as the embedding record of ``collection`` (see :func:`check_identity`)."""
    meta_write(client, collection, {record_key(collection, "embedding"): ("embedding", record)})


def property_record(client: MilvusClient, collection: str, key: str) -> dict[str, Any] | None:
    """A JSON record kept in a collection property (where milvus-rag before 0.x kept it)."""
    properties = client.describe_collection(collection).get("properties") or {}
    raw = properties.get(key)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
