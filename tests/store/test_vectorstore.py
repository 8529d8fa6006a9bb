"""`milvus_rag.store.vectorstore`: the default hybrid on a dense collection."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from milvus_rag.embeddings import embeddings_from_settings
from milvus_rag.settings import Settings
from milvus_rag.store import connect, open_vector_store
from tests.support.store import _create

pytestmark = [pytest.mark.slow, pytest.mark.contract]


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


def test_langchain_writes_land_in_the_default_scope(make_settings: Callable[..., Settings]) -> None:
    """A text added through the store's LangChain ``add_texts`` without a scope is in the
    default scope: a key of that scope sees it (every engine; a Milvus 2.3 server needs
    it, see tests/system/test_milvus_server.py)."""
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


@pytest.mark.parametrize("scope", [5, "hr team", ["hr"]])
def test_a_metadata_scope_that_is_no_scope_name_is_refused_before_writing(
    make_settings: Callable[..., Settings], scope: object
) -> None:
    """LangChain's ``add_texts`` with a scope that is not a scope name: one typed error,
    and nothing of the batch is written."""
    from milvus_rag.errors import ConfigError
    from milvus_rag.store import count_entities, flush_collection

    s = make_settings()
    _create(s)
    store = open_vector_store(s, embeddings_from_settings(s))
    try:
        with pytest.raises(ConfigError, match="metadata scope .* is not valid"):
            store.add_texts(
                ["fine", "not fine"],
                metadatas=[{"source": "b.md"}, {"source": "b.md", "scope": scope}],
                ids=["b1", "b2"],
            )
        flush_collection(store.client, s.milvus.collection)
        assert count_entities(store.client, s.milvus.collection) == 1  # _create's row only
    finally:
        store.client.close()
