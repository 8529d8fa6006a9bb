"""What the store tests share: creating a collection, records and properties."""

from __future__ import annotations

from typing import Any

import pytest

from milvus_rag.embeddings import embeddings_from_settings
from milvus_rag.settings import Settings
from milvus_rag.store import connect, open_vector_store


def _create(s: Settings, mode: str | None = None) -> None:
    store = open_vector_store(s, embeddings_from_settings(s), create=True, mode=mode)
    store.add_texts(["hello milvus"], metadatas=[{"source": "a.md"}], ids=["a"])
    store.client.close()


# ----------------------------------------------------------------- the records' home


def _properties_or_skip(client: Any, collection: str) -> None:
    """Skip on an engine without collection properties (Milvus Lite 2.5): no older
    milvus-rag could keep its records there."""
    try:
        client.alter_collection_properties(collection, properties={"milvus_rag.probe": "1"})
    except Exception as exc:
        if "UNIMPLEMENTED" in str(exc):
            pytest.skip("this engine keeps no collection properties")
        raise


def _forget_records(s: Settings) -> None:
    """Remove milvus-rag's records of the collection, as a kill before they were written."""
    from milvus_rag.store import META_COLLECTION

    client = connect(s.milvus)
    client.delete(META_COLLECTION, filter=f'collection == "{s.milvus.collection}"')
    client.close()
