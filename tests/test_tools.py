"""Every public runnable becomes a LangChain tool with ``as_tool()`` and no arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from milvus_rag.settings import Settings
from tests.support.corpus import CHAIN_DOCS, store_chain_docs
from tests.support.openai_server import FakeOpenAIServer

QUESTION = "Where does Milvus store data?"
SOURCES = {source for _, source in CHAIN_DOCS}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This API is in beta")
def test_each_public_runnable_is_a_tool(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    from langchain_core.tools import BaseTool
    from milvus_rag.chains import (
        build_rag_chain,
        build_rag_chain_with_sources,
        build_retrieval_chain,
        configurable_retriever,
    )

    from milvus_rag import MilvusRAGRetriever

    settings = make_settings()
    store_chain_docs(settings)
    retriever = MilvusRAGRetriever.from_settings(settings)
    runnables: dict[str, Any] = {
        "rag": build_rag_chain(settings, retriever=retriever),
        "rag_with_sources": build_rag_chain_with_sources(settings, retriever=retriever),
        "retrieve": build_retrieval_chain(retriever=retriever),
        "retriever": retriever,
        "configurable_retriever": configurable_retriever(retriever),
    }
    for label, runnable in runnables.items():
        tool = runnable.as_tool()
        assert isinstance(tool, BaseTool), label
        assert tool.name and tool.description, label
        if "question" in tool.args:  # the chains: one object schema
            assert set(tool.args) >= {"question", "chat_history", "citations", "system"}, label
            assert tool.args["question"]["type"] == "string"
            result = tool.invoke({"question": QUESTION})
        else:  # retrievers: a string
            result = tool.invoke(QUESTION)
        if label == "rag":
            assert result == llm.answer
        elif label == "rag_with_sources":
            assert result["answer"] == llm.answer and result["context"]
        elif label == "retrieve":
            assert {passage["source"] for passage in result} <= SOURCES and result
        else:
            assert {doc.metadata["source"] for doc in result} <= SOURCES and result
    assert runnables["rag"].as_tool().name == "milvus_rag"
    # A plain string is still a question, as in the tutorial.
    assert runnables["rag"].invoke(QUESTION) == llm.answer
    assert runnables["retrieve"].invoke(QUESTION)
