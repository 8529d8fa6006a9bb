"""The store: embedding identity, Milvus Lite's one-process rule, empty collections."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.embeddings import MilvusModelEmbeddings, embeddings_from_settings
from milvus_rag.errors import (
    EmbeddingMismatchError,
    EmptyCollectionError,
    SchemaMismatchError,
    StoreLockedError,
    StoreUnavailableError,
)
from milvus_rag.settings import Settings
from milvus_rag.store import collection_identity, connect, open_vector_store

pytestmark = pytest.mark.slow


def _create(s: Settings) -> None:
    store = open_vector_store(s, embeddings_from_settings(s), create=True)
    store.add_texts(["hello milvus"], metadatas=[{"source": "a.md"}], ids=["a"])
    store.client.close()


def test_identity_recorded(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s)
    record = collection_identity(connect(s.milvus), s.milvus.collection)
    assert record is not None
    assert record["dim"] == 32 and record["metric"] == "IP"
    assert record["model"] == Path(str(s.embedding.model_dir)).name


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
    _create(s)
    with pytest.raises(SchemaMismatchError, match="--recreate"):
        open_vector_store(s, embeddings_from_settings(s), mode="hybrid")


def test_missing_folder(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(milvus={"uri": "/no/such/dir/x.db"})
    with pytest.raises(StoreUnavailableError, match="/no/such/dir"):
        connect(s.milvus)


def test_unreachable_server(make_settings: Callable[..., Settings]) -> None:
    from tests.support.openai_server import closed_port

    s = make_settings(milvus={"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 3})
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        connect(s.milvus)
    assert time.monotonic() - started < 20


def test_second_process_gets_a_clear_message(tmp_path: Path) -> None:
    from milvus_rag.settings import load_settings
    from tests.support.lite_server import lite_file_held

    with lite_file_held(tmp_path / "locked.db") as db:
        s = load_settings(overrides={"milvus": {"uri": str(db)}})
        with pytest.raises(StoreLockedError) as info:
            connect(s.milvus)
        message = str(info.value)
        assert str(db) in message and "another process" in message and "milvus.uri" in message
        assert "\n" not in message


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
