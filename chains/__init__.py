"""Chains: the tutorial prompt and the LCEL RAG chain factories.

The chains take a question, or a question with its chat history (a follow-up is
rewritten into a standalone question first), optionally cite their passages,
and accept any LangChain retriever, chat model or prompt.
"""

from milvus_rag.chains.history import messages_from
from milvus_rag.chains.prompt import (
    CITATION_INSTRUCTION,
    CONDENSE_PROMPT,
    RAG_PROMPT,
    SYSTEM_MESSAGE,
    USER_MESSAGE,
    format_docs,
    neutralize,
    source_list,
)
from milvus_rag.chains.rag import (
    CONDENSE_TAG,
    INTERNAL_METADATA,
    QuestionInput,
    build_rag_chain,
    build_rag_chain_with_sources,
    build_retrieval_chain,
    client_document,
    retrieved_of,
    source_of,
)
from milvus_rag.chains.retrieval import (
    CONFIGURABLE_FIELDS,
    ScopedRetriever,
    configurable_retriever,
)

__all__ = [
    "CITATION_INSTRUCTION",
    "CONDENSE_PROMPT",
    "CONDENSE_TAG",
    "CONFIGURABLE_FIELDS",
    "INTERNAL_METADATA",
    "RAG_PROMPT",
    "SYSTEM_MESSAGE",
    "USER_MESSAGE",
    "QuestionInput",
    "ScopedRetriever",
    "build_rag_chain",
    "build_rag_chain_with_sources",
    "build_retrieval_chain",
    "client_document",
    "configurable_retriever",
    "format_docs",
    "messages_from",
    "neutralize",
    "retrieved_of",
    "source_list",
    "source_of",
]
