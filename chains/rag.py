"""LCEL chains: question -> retrieve -> tutorial prompt -> chat model -> answer.

Both factories accept a plain string or ``{"question": ...}`` as input and
support ``invoke``, ``batch``, ``stream``, ``ainvoke`` and ``astream``.
Building a chain touches no network and loads no model: the store opens and
the model loads on the first question.

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.chains import build_rag_chain

        chain = build_rag_chain(load_settings())
        print(chain.invoke("How is data stored in milvus?"))
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from milvus_rag.chains.prompt import RAG_PROMPT, format_docs, neutralize
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.settings import Settings

__all__ = ["QuestionInput", "build_rag_chain", "build_rag_chain_with_sources", "source_of"]


class QuestionInput(BaseModel):
    """The chains' input when given as a mapping."""

    question: str = Field(..., description="The question to answer from the documents.")


def _question(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return {"question": value}
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        return {"question": value["question"]}
    raise TypeError('chain input must be a question string or {"question": "..."}')


def _prompt_inputs(state: dict[str, Any]) -> dict[str, str]:
    return {"context": format_docs(state["context"]), "question": neutralize(state["question"])}


def _parts(
    settings: Settings | None,
    retriever: BaseRetriever | None,
    llm: BaseChatModel | None,
    embeddings: Any,
    expr: str | None = None,
) -> tuple[BaseRetriever, BaseChatModel]:
    if (retriever is None or llm is None) and settings is None:
        raise TypeError("pass settings, or both retriever and llm")
    if retriever is None:
        from milvus_rag.retriever import MilvusRAGRetriever

        assert settings is not None
        retriever = MilvusRAGRetriever.from_settings(settings, embeddings=embeddings, expr=expr)
    if llm is None:
        from milvus_rag.llm import chat_model_from_settings

        assert settings is not None
        llm = chat_model_from_settings(settings)
    return retriever, llm


def _retrieve_then(retriever: BaseRetriever) -> Runnable[Any, dict[str, Any]]:
    input_type: Any = str | QuestionInput
    normalise = RunnableLambda(_question).with_types(input_type=input_type)
    return normalise | RunnablePassthrough.assign(context=itemgetter("question") | retriever)


def build_rag_chain(
    settings: Settings | None = None,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
    embeddings: Any = None,
    expr: str | None = None,
) -> Runnable[Any, str]:
    """Question -> answer string.

    Args:
        settings: used to build whatever is not given.
        retriever: any LangChain retriever (default: :class:`MilvusRAGRetriever`).
        llm: any chat model (default: ``ChatOpenAI`` on the configured endpoint).
        embeddings: the embeddings for the default retriever.
        expr: a Milvus filter for the default retriever (see ``milvus_rag.filters``).
    """
    retriever, llm = _parts(settings, retriever, llm, embeddings, expr)
    answer = RunnableLambda(_prompt_inputs) | RAG_PROMPT | llm | StrOutputParser()
    return (_retrieve_then(retriever) | answer).with_config(run_name="milvus_rag")


def build_rag_chain_with_sources(
    settings: Settings | None = None,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
    embeddings: Any = None,
    expr: str | None = None,
) -> Runnable[Any, dict[str, Any]]:
    """Question -> ``{"answer": str, "context": [Document, ...]}``.

    Each context document carries ``metadata["source"]`` and ``metadata["score"]``.
    Streaming yields the ``context`` first, then the answer in pieces.
    """
    retriever, llm = _parts(settings, retriever, llm, embeddings, expr)
    answer = RunnableLambda(_prompt_inputs) | RAG_PROMPT | llm | StrOutputParser()
    chain = _retrieve_then(retriever) | RunnablePassthrough.assign(answer=answer).pick(
        ["answer", "context"]
    )
    return chain.with_config(run_name="milvus_rag_with_sources")


def source_of(doc: Document) -> dict[str, Any]:
    """The JSON shape of a retrieved chunk: ``{"text", "source", "score"}``."""
    return {
        "text": doc.page_content,
        "source": doc.metadata.get("source"),
        "score": doc.metadata.get("score"),
    }
