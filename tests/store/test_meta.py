"""`milvus_rag.store.meta`: the embedding record in the ``milvus_rag_meta`` collection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.embeddings import embeddings_from_settings
from milvus_rag.settings import Settings
from milvus_rag.store import collection_identity, connect, open_vector_store
from tests.support.store import _create, _forget_records, _properties_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_identity_recorded(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s)
    record = collection_identity(connect(s.milvus), s.milvus.collection)
    assert record is not None
    assert record["dim"] == 32 and record["metric"] == "IP"
    assert record["model"] == Path(str(s.embedding.model_dir)).name


def test_record_lives_in_the_metadata_collection(make_settings: Callable[..., Settings]) -> None:
    from milvus_rag.store import META_COLLECTION

    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    rows = client.query(META_COLLECTION, filter='key != ""', output_fields=["key", "kind"])
    assert {(row["key"], row["kind"]) for row in rows} == {
        (f"{s.milvus.collection}:embedding", "embedding")
    }
    assert client.describe_collection(s.milvus.collection).get("properties", {}) == {}


def test_record_in_properties_is_read_and_moved(make_settings: Callable[..., Settings]) -> None:
    """A collection of an older milvus-rag keeps its record in properties: it still opens,
    and the next write moves the record to the metadata collection."""
    import json

    from milvus_rag.store import IDENTITY_PROPERTY, META_COLLECTION

    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    _properties_or_skip(client, s.milvus.collection)
    record = collection_identity(client, s.milvus.collection)
    _forget_records(s)
    client.alter_collection_properties(
        s.milvus.collection, properties={IDENTITY_PROPERTY: json.dumps(record)}
    )
    assert collection_identity(client, s.milvus.collection) == record
    client.close()
    open_vector_store(s, embeddings_from_settings(s)).client.close()  # reads only
    client = connect(s.milvus)
    everything = 'key != ""'
    assert client.query(META_COLLECTION, filter=everything, output_fields=["key"]) == []
    open_vector_store(s, embeddings_from_settings(s), create=True, client=client)
    keys = [
        r["key"] for r in client.query(META_COLLECTION, filter=everything, output_fields=["key"])
    ]
    assert keys == [f"{s.milvus.collection}:embedding"]
    assert collection_identity(client, s.milvus.collection) == record
