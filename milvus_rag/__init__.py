"""milvus-rag: the Milvus + Lepton AI RAG tutorial as LangChain components.

Importing the package loads no model, opens no client and touches no network; it
does not even import LangChain or pymilvus: each public name below is imported on
first access (module ``__getattr__``), so ``milvus-rag --help`` and
``import milvus_rag`` stay fast.

Example:
    .. code-block:: python

        from milvus_rag import build_rag_chain, load_settings

        settings = load_settings()  # ./config.yaml, MILVUS_RAG_* env vars, defaults
        chain = build_rag_chain(settings)
        print(chain.invoke("How is data stored in milvus?"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from milvus_rag.lazy import lazy_exports

if TYPE_CHECKING:
    from milvus_rag.chains import (
        RAG_PROMPT,
        build_rag_chain,
        build_rag_chain_with_sources,
        neutralize,
    )
    from milvus_rag.embeddings import BatchedOnnxEncoder, MilvusModelEmbeddings
    from milvus_rag.errors import (
        ConfigError,
        EmbeddingError,
        LLMError,
        MilvusRAGError,
        SourceError,
        StoreError,
    )
    from milvus_rag.llm import EndpointChatOpenAI, chat_model_from_settings
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.settings import Settings, load_settings
    from milvus_rag.store import open_vector_store
    from milvus_rag.sync import IngestReport, ingest

__all__ = [
    "RAG_PROMPT",
    "BatchedOnnxEncoder",
    "ConfigError",
    "EmbeddingError",
    "EndpointChatOpenAI",
    "IngestReport",
    "LLMError",
    "MilvusModelEmbeddings",
    "MilvusRAGError",
    "MilvusRAGRetriever",
    "Settings",
    "SourceError",
    "StoreError",
    "build_rag_chain",
    "build_rag_chain_with_sources",
    "chat_model_from_settings",
    "ingest",
    "load_settings",
    "neutralize",
    "open_vector_store",
]

__version__ = "0.1.0"

# Public name -> the module defining it (imported on first access).
_LAZY: dict[str, str] = {
    "RAG_PROMPT": "milvus_rag.chains",
    "build_rag_chain": "milvus_rag.chains",
    "build_rag_chain_with_sources": "milvus_rag.chains",
    "neutralize": "milvus_rag.chains",
    "BatchedOnnxEncoder": "milvus_rag.embeddings",
    "MilvusModelEmbeddings": "milvus_rag.embeddings",
    "ConfigError": "milvus_rag.errors",
    "EmbeddingError": "milvus_rag.errors",
    "LLMError": "milvus_rag.errors",
    "MilvusRAGError": "milvus_rag.errors",
    "SourceError": "milvus_rag.errors",
    "StoreError": "milvus_rag.errors",
    "EndpointChatOpenAI": "milvus_rag.llm",
    "chat_model_from_settings": "milvus_rag.llm",
    "MilvusRAGRetriever": "milvus_rag.retriever",
    "Settings": "milvus_rag.settings",
    "load_settings": "milvus_rag.settings",
    "open_vector_store": "milvus_rag.store",
    "IngestReport": "milvus_rag.sync",
    "ingest": "milvus_rag.sync",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
