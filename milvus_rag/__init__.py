"""milvus-rag: the Milvus + Lepton AI RAG tutorial as LangChain components.

Importing the package loads no model, opens no client and touches no network.

Example:
    .. code-block:: python

        from milvus_rag import build_rag_chain, load_settings

        settings = load_settings()  # ./config.yaml, MILVUS_RAG_* env vars, defaults
        chain = build_rag_chain(settings)
        print(chain.invoke("How is data stored in milvus?"))
"""

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
