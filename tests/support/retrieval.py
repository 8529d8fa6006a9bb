"""What the retrieval tests share: a hybrid collection of a small corpus, retrievers over it."""

from __future__ import annotations

from typing import Any

from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import Settings


def _retriever(s: Settings, **kw: Any) -> MilvusRAGRetriever:
    return MilvusRAGRetriever.from_settings(s, **kw)


def _sources(docs: list) -> list[str]:
    return [d.metadata["source"] for d in docs]
