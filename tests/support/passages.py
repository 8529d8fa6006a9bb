"""A retriever of two fixed passages, whatever the question (no Milvus: fast)."""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class Passages(BaseRetriever):
    """Two fixed passages, whatever the question (no Milvus: fast)."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(
                page_content="Milvus stores data in object storage.", metadata={"source": "a"}
            ),
            Document(page_content="Metadata lives in etcd.", metadata={"source": "b"}),
        ]
