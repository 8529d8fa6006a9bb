"""`milvus_rag.chains.retrieval`: the configurable retriever (k, mode, source) and the retrieval chain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from milvus_rag.chains import (
    build_rag_chain_with_sources,
    build_retrieval_chain,
    configurable_retriever,
)

from milvus_rag.embeddings import embeddings_from_settings
from milvus_rag.errors import ConfigError, SchemaMismatchError
from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import Settings
from milvus_rag.store import open_vector_store
from tests.support.conversation import DOCS, FAQ_HEADING, QUESTION, _messages
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow


def test_configurable_k_mode_and_source(
    settings: Settings, llm: FakeOpenAIServer, make_settings: Callable[..., Settings]
) -> None:
    base = MilvusRAGRetriever.from_settings(settings)
    retriever = configurable_retriever(base)
    assert len(retriever.invoke(QUESTION)) == 3
    assert len(retriever.invoke(QUESTION, {"configurable": {"k": 1}})) == 1
    only = retriever.invoke(QUESTION, {"configurable": {"source": ["en/animals/", "en/food/*"]}})
    assert {d.metadata["source"] for d in only} == {"en/animals/zebra.md", "en/food/bread.md"}
    assert len(retriever.invoke(QUESTION)) == 3  # nothing leaked into the default
    assert base.expr is None and base.k == 3
    assert len(retriever.invoke(QUESTION, {"configurable": {"mode": "dense"}})) == 3
    dense = make_settings(retrieval={"mode": "dense"}, milvus={"collection": "dense_docs"})
    store = open_vector_store(dense, embeddings_from_settings(dense), create=True)
    store.add_texts([DOCS[0][0]], metadatas=[{"source": DOCS[0][1]}], ids=["d0"])
    store.client.close()
    on_dense = configurable_retriever(MilvusRAGRetriever.from_settings(dense))
    with pytest.raises(SchemaMismatchError, match="hybrid"):  # a dense collection
        on_dense.invoke(QUESTION, {"configurable": {"mode": "hybrid"}})
    with pytest.raises(ConfigError, match="max_k"):
        retriever.invoke(QUESTION, {"configurable": {"k": 500}})
    # Only k, mode and source are configurable: anything else is not applied.
    schema = retriever.config_schema().model_json_schema()
    assert set(schema["$defs"]["Configurable"]["properties"]) == {"k", "mode", "source"}
    ignored = {"uri": "/elsewhere.db", "collection": "other", "base": None, "pool": None}
    assert len(retriever.invoke(QUESTION, {"configurable": ignored})) == 3

    chain = build_rag_chain_with_sources(settings, retriever=retriever)
    result = chain.invoke(QUESTION, {"configurable": {"k": 2, "source": ["en/music/"]}})
    assert [d.metadata["source"] for d in result["context"]] == ["en/music/guitar.md"]
    assert "Guitar" in _messages(llm.chat_requests()[-1])[1]["content"]


def test_retrieval_chain_lists_passages(settings: Settings, llm: FakeOpenAIServer) -> None:
    chain = build_retrieval_chain(settings)
    passages = chain.invoke({"question": QUESTION})
    assert passages[0] == {
        "text": DOCS[0][0],
        "source": "en/faq/product_faq.md",
        "heading": FAQ_HEADING,
        "score": passages[0]["score"],
    }
    assert isinstance(passages[0]["score"], float) and len(passages) == 3
    assert chain.invoke(QUESTION) == passages
    assert llm.chat_requests() == []
