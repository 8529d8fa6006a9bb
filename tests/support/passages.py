"""A retriever of two fixed passages, whatever the question (no Milvus: fast)."""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class Passages(BaseRetriever):
    """Two fixed passages, whatever the question (no Milvus: fast): from ``sources``,
    with ``scores`` in their metadata when given."""

    sources: tuple[str, str] = ("a", "b")
    scores: tuple[float, float] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        texts = ("Milvus stores data in object storage.", "Metadata lives in etcd.")
        docs = []
        for i, (text, source) in enumerate(zip(texts, self.sources, strict=True)):
            metadata: dict[str, object] = {"source": source}
            if self.scores is not None:
                metadata["score"] = self.scores[i]
            docs.append(Document(page_content=text, metadata=metadata))
        return docs
