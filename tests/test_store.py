"""The store: embedding identity, Milvus Lite's one-process rule, empty collections."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from milvus_rag.store import collection_identity, connect, has_sparse_field, open_vector_store

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def _create(s: Settings, mode: str | None = None) -> None:
    store = open_vector_store(s, embeddings_from_settings(s), create=True, mode=mode)
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
    _create(s, mode="dense")
    with pytest.raises(SchemaMismatchError, match="--recreate"):
        open_vector_store(s, embeddings_from_settings(s), mode="hybrid")


def test_default_hybrid_keeps_a_dense_collection_working_with_one_note(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    from milvus_rag.retriever import MilvusRAGRetriever

    s = make_settings()
    assert s.retrieval.mode == "hybrid"  # the default
    _create(s, mode="dense")
    with caplog.at_level(logging.WARNING, logger="milvus_rag.store"):
        retriever = MilvusRAGRetriever.from_settings(s)
        docs = retriever.invoke("hello milvus")
    assert [d.page_content for d in docs] == ["hello milvus"] and retriever.mode == "dense"
    notes = [r.getMessage() for r in caplog.records if "needs a re-ingest" in r.getMessage()]
    assert len(notes) == 1 and "searched dense" in notes[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="milvus_rag.store"):  # an ingest writes dense
        store = open_vector_store(s, embeddings_from_settings(s), create=True)
    assert len(store.vector_fields) == 1
    store.client.close()
    notes = [r.getMessage() for r in caplog.records if "needs a re-ingest" in r.getMessage()]
    assert len(notes) == 1 and "written dense" in notes[0]


def test_default_ingest_creates_the_bm25_field(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    try:
        assert has_sparse_field(client, s.milvus.collection)
    finally:
        client.close()


def test_missing_folder(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(milvus={"uri": "/no/such/dir/x.db"})
    with pytest.raises(StoreUnavailableError, match="/no/such/dir"):
        connect(s.milvus)


def test_unreachable_server(make_settings: Callable[..., Settings]) -> None:
    from tests.support.openai_server import closed_port

    # A refused connection fails at once: with an hour's timeout, waiting for it would
    # be the test runner's timeout.
    s = make_settings(milvus={"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 3600})
    with pytest.raises(StoreUnavailableError, match="cannot be reached .*refused"):
        connect(s.milvus)


def test_concurrent_first_opens_of_a_lite_file(tmp_path: Path) -> None:
    """A server's upload job creates its Lite file while requests open it too: every open
    works (a second open's lock probe must not release the first one's engine lock)."""
    import threading

    from milvus_rag.settings import load_settings

    s = load_settings(overrides={"milvus": {"uri": str(tmp_path / "fresh.db")}})
    first: list[Any] = []
    opened = threading.Thread(target=lambda: first.append(connect(s.milvus)))
    opened.start()
    others = 0
    while opened.is_alive() or not others:  # open and close while the first one starts
        connect(s.milvus).close()
        others += 1
    opened.join()
    assert first and first[0].list_collections() is not None
    first[0].close()


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


FIRST_SEARCHES = """
import sys
from concurrent.futures import ThreadPoolExecutor

from pymilvus.client.utils import SciPyHelper

from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import load_settings

assert "scipy.sparse" not in sys.modules  # the lazy import is still ahead
retriever = MilvusRAGRetriever.from_settings(load_settings())
retriever.store()  # opening settles pymilvus's lazy scipy check, before any search
assert SciPyHelper._checked
with ThreadPoolExecutor(8) as pool:
    found = list(pool.map(lambda _: retriever.invoke("Where is data stored?"), range(8)))
assert all(found), found
print("ok")
"""


def test_concurrent_first_searches_in_a_fresh_process(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A server's first requests arrive together; pymilvus's first search imports lazily."""
    import os
    import subprocess
    import sys

    settings = make_settings()
    env = {
        **os.environ,
        "MILVUS_RAG_MILVUS__URI": settings.milvus.uri,
        "MILVUS_RAG_MILVUS__COLLECTION": settings.milvus.collection,
        "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(settings.embedding.model_dir),
    }
    # The documents are written by another process: Milvus Lite serves a file to one.
    write = "from milvus_rag.settings import load_settings\n"
    write += "from tests.support.corpus import store_chain_docs\n"
    write += "store_chain_docs(load_settings())\n"
    for script in (write, FIRST_SEARCHES):
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=Path(__file__).resolve().parents[1],  # for tests.support
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


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


def test_ingest_records_in_properties_are_moved(make_settings: Callable[..., Settings]) -> None:
    import json

    from milvus_rag.store import INGESTS_PROPERTY, ingest_records, record_ingest

    s = make_settings()
    _create(s)
    name = s.milvus.collection
    client = connect(s.milvus)
    _properties_or_skip(client, name)
    old = {
        "runs": [
            {"origin": "/old", "glob": None, "at": "2026-01-01T00:00:00+00:00", "splitter": "m"}
        ],
        "chunkers": {"fp-old": "m"},
    }
    client.alter_collection_properties(name, properties={INGESTS_PROPERTY: json.dumps(old)})
    assert ingest_records(client, name) == old
    record_ingest(client, name, origin="/new", glob="*.md", splitter="m", chunker="fp", at="x")
    records = ingest_records(client, name)
    assert [run["origin"] for run in records["runs"]] == ["/old", "/new"]
    assert records["chunkers"] == {"fp-old": "m", "fp": "m"}
    record_ingest(client, name, origin="/old", glob=None, splitter="t", chunker="fp", at="y")
    assert [(r["origin"], r["at"]) for r in ingest_records(client, name)["runs"]] == [
        ("/new", "x"),
        ("/old", "y"),
    ]


def test_reason_of_a_grpc_error_is_its_code_and_details() -> None:
    import grpc

    from milvus_rag.store import reason

    class Denied(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

        def details(self) -> str:
            return "user milvus_rag has no privilege CreateCollection\nmore"

        def __str__(self) -> str:
            return "<_InactiveRpcError of RPC that terminated with:\n\tstatus = ..."

    assert (
        reason(Denied()) == "PERMISSION_DENIED: user milvus_rag has no privilege CreateCollection"
    )
    assert reason(ValueError("plain\nsecond line")) == "plain"


def test_failed_loads_are_retried_then_one_line(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    from milvus_rag import store
    from milvus_rag.errors import StoreError
    from milvus_rag.store import loading

    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    client.release_collection(s.milvus.collection)
    monkeypatch.setattr(loading, "LOAD_BACKOFF_SECONDS", 0.0)  # where load_collection reads it
    original = MilvusClient.load_collection
    failures = {"left": store.LOAD_ATTEMPTS - 1}

    def flaky(self: MilvusClient, name: str, **kwargs: object) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("Failed to read all data for array (file seems not fully written?)")
        original(self, name, **kwargs)

    monkeypatch.setattr(MilvusClient, "load_collection", flaky)
    store.load_collection(client, s.milvus.collection)  # the last attempt gets through
    client.release_collection(s.milvus.collection)
    failures["left"] = store.LOAD_ATTEMPTS
    with pytest.raises(StoreError, match="could not be loaded") as info:
        store.load_collection(client, s.milvus.collection)
    assert "\n" not in str(info.value) and "not fully written" in str(info.value)


#: Rounds of flush, release and load (Milvus Lite 3.2.2 failed about 1 load in 40 here).
FLUSH_RELEASE_LOADS = 20


def _refused_while_released(exc: Exception) -> bool:
    """The refusal Milvus gives a search racing a release (what this test provokes)."""
    text = str(exc).lower()
    # Milvus Lite 2.5 answers "collection not found" for a released collection.
    return any(m in text for m in ("call load()", "not loaded", "collection not found"))


def test_flush_release_load_under_concurrent_load(make_settings: Callable[..., Settings]) -> None:
    """Milvus Lite 3.2.2 fails some loads right after ``flush`` and ``release`` while
    other threads insert (``Failed to read all data for array ... (file seems not fully
    written?)``; a load tried again succeeds): the store's load survives it."""
    import random
    import threading

    from milvus_rag.store import load_collection

    s = make_settings()
    _create(s)
    name = s.milvus.collection
    client = connect(s.milvus)
    stop = threading.Event()
    errors: list[BaseException] = []
    rng = random.Random(17)

    def vector() -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(32)]

    def writer(tag: str) -> None:
        n = 0
        while not stop.is_set():
            try:
                rows = [
                    {
                        "id": f"{tag}{n}-{i}",
                        "text": "x" * (i * 4),
                        "vector": vector(),
                        "source": "w",
                    }
                    for i in range(200)
                ]
                client.insert(name, rows)
                n += 1
            except Exception as exc:  # a write racing a release may be refused
                if not _refused_while_released(exc):
                    errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            try:
                client.search(name, [vector()], anns_field="vector", limit=3)
            except Exception as exc:  # a search between release and load is refused
                if not _refused_while_released(exc):
                    errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    try:
        for _ in range(FLUSH_RELEASE_LOADS):
            client.flush(name)
            client.release_collection(name)
            load_collection(client, name)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors[:3]]
    assert client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] > 1


def test_langchain_writes_land_in_the_default_scope(make_settings: Callable[..., Settings]) -> None:
    """A text added through the store's LangChain ``add_texts`` without a scope is in the
    default scope: a key of that scope sees it (every engine; a Milvus 2.3 server needs
    it, see tests/test_milvus_server.py)."""
    from milvus_rag.scopes import restricted_to
    from milvus_rag.store import list_sources

    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    try:
        with restricted_to(("default",)):
            listed = list_sources(client, s.milvus.collection)
        assert [(e.source, e.scope) for e in listed] == [("a.md", "default")]
        with restricted_to(("hr",)):
            assert list_sources(client, s.milvus.collection) == []
    finally:
        client.close()
