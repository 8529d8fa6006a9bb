"""`milvus_rag.store.collection`: the identity check on every open, recreation, unfinished creations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.embeddings import MilvusModelEmbeddings, embeddings_from_settings
from milvus_rag.errors import (
    EmbeddingMismatchError,
    EmptyCollectionError,
    SchemaMismatchError,
)
from milvus_rag.settings import Settings
from milvus_rag.store import collection_identity, connect, has_sparse_field, open_vector_store
from tests.support.store import _create, _forget_records

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_other_model_is_refused(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from tests.support.tiny_model import make_tiny_model

    s = make_settings()
    _create(s)
    other = make_tiny_model(tmp_path / "other", hidden=32, seed=3)
    with pytest.raises(EmbeddingMismatchError, match="--recreate"):
        open_vector_store(s, MilvusModelEmbeddings(model_dir=other))
    bigger = make_tiny_model(tmp_path / "bigger", hidden=16)
    with pytest.raises(EmbeddingMismatchError, match="dim"):
        open_vector_store(s, MilvusModelEmbeddings(model_dir=bigger))


def test_other_metric_is_refused(make_settings: Callable[..., Settings]) -> None:
    _create(make_settings())
    s = make_settings(milvus={"metric": "L2"})
    with pytest.raises(EmbeddingMismatchError, match="metric"):
        open_vector_store(s, embeddings_from_settings(s))


def test_recreate_replaces(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from tests.support.tiny_model import make_tiny_model

    s = make_settings()
    _create(s)
    other = make_tiny_model(tmp_path / "other", hidden=32, seed=3)
    store = open_vector_store(s, MilvusModelEmbeddings(model_dir=other), recreate=True)
    assert (
        store.client.query(s.milvus.collection, filter="", output_fields=["count(*)"])[0][
            "count(*)"
        ]
        == 0
    )


def test_foreign_collection_is_refused(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    client = connect(s.milvus)
    client.create_collection(s.milvus.collection, dimension=32, metric_type="IP")
    with pytest.raises(EmbeddingMismatchError, match="not created by milvus-rag"):
        open_vector_store(s, embeddings_from_settings(s), client=client)


def test_missing_collection(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    with pytest.raises(EmptyCollectionError, match="milvus-rag ingest"):
        open_vector_store(s, embeddings_from_settings(s))


def test_hybrid_on_dense_collection(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s, mode="dense")
    with pytest.raises(SchemaMismatchError, match="--recreate"):
        open_vector_store(s, embeddings_from_settings(s), mode="hybrid")


def test_default_ingest_creates_the_bm25_field(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    try:
        assert has_sparse_field(client, s.milvus.collection)
    finally:
        client.close()


def test_recreate_with_a_broken_model_keeps_the_data(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from milvus_rag.errors import ModelNotAvailableError

    s = make_settings()
    _create(s)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"junk")
    with pytest.raises(ModelNotAvailableError):
        open_vector_store(s, MilvusModelEmbeddings(model_dir=broken), recreate=True)
    client = connect(s.milvus)
    assert (
        client.query(s.milvus.collection, filter="", output_fields=["count(*)"])[0]["count(*)"] == 1
    )


def test_unfinished_creation_is_completed(make_settings: Callable[..., Settings]) -> None:
    """An empty collection with milvus-rag's schema and no record (a kill between the
    creation and the record, in older releases) is finished by the next write."""
    from milvus_rag.store import create_collection

    s = make_settings()
    identity = embeddings_from_settings(s).identity()
    client = connect(s.milvus)
    create_collection(client, s, identity, hybrid=False)
    _forget_records(s)
    assert collection_identity(client, s.milvus.collection) is None
    store = open_vector_store(s, embeddings_from_settings(s), create=True, client=client)
    store.add_texts(["hello milvus"], metadatas=[{"source": "a.md"}], ids=["a"])
    assert collection_identity(client, s.milvus.collection) == dict(identity, metric="IP")


def test_collection_without_its_index_is_finished(make_settings: Callable[..., Settings]) -> None:
    """A creation killed after the collection and before its index: the next run indexes it."""
    from milvus_rag.store import VECTOR_FIELD, create_collection

    s = make_settings()
    client = connect(s.milvus)
    create_collection(client, s, embeddings_from_settings(s).identity(), hybrid=False)
    client.release_collection(s.milvus.collection)
    client.drop_index(s.milvus.collection, VECTOR_FIELD)
    _create(s)
    assert client.list_indexes(s.milvus.collection, field_name=VECTOR_FIELD)


def test_chunks_without_a_record_are_refused(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s)
    _forget_records(s)
    with pytest.raises(EmbeddingMismatchError, match="no embedding record") as info:
        open_vector_store(s, embeddings_from_settings(s), create=True)
    assert "migrate --recreate" in str(info.value)
