"""Chains: the tutorial prompt and the LCEL RAG chain factories."""

from milvus_rag.chains.prompt import (
    RAG_PROMPT,
    SYSTEM_MESSAGE,
    USER_MESSAGE,
    format_docs,
    neutralize,
)
from milvus_rag.chains.rag import (
    QuestionInput,
    build_rag_chain,
    build_rag_chain_with_sources,
    source_of,
)

__all__ = [
    "RAG_PROMPT",
    "SYSTEM_MESSAGE",
    "USER_MESSAGE",
    "QuestionInput",
    "build_rag_chain",
    "build_rag_chain_with_sources",
    "format_docs",
    "neutralize",
    "source_of",
]
