"""Per-request retrieval options: ``k``, ``mode`` and a source filter as configurable fields.

:func:`configurable_retriever` wraps a :class:`~milvus_rag.retriever.MilvusRAGRetriever`
so that each call may choose, through LangChain's ``configurable`` config, how many
passages to retrieve (``k``), the search mode (``mode``) and which sources to search
(``source``: path prefixes or globs, as ``milvus-rag search --source``). Nothing else
is configurable: the Milvus URI, the collection and the embedding model stay those of
the wrapped retriever.

The wrapped retriever's store and model are shared: a request for another mode
opens that mode's store once and keeps it; a source filter narrows a shallow copy
of an opened retriever (user values escaped by :mod:`milvus_rag.filters`).

Example:
    .. code-block:: python

        from milvus_rag import MilvusRAGRetriever, load_settings
        from milvus_rag.chains import build_rag_chain, configurable_retriever

        settings = load_settings()
        retriever = configurable_retriever(MilvusRAGRetriever.from_settings(settings))
        chain = build_rag_chain(settings, retriever=retriever)
        chain.invoke(
            "What is a partition key?",
            config={"configurable": {"k": 5, "mode": "hybrid", "source": ["en/userGuide/"]}},
        )
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import ConfigurableField, Runnable
from pydantic import ConfigDict, Field

from milvus_rag.errors import ConfigError

if TYPE_CHECKING:
    from milvus_rag.retriever import MilvusRAGRetriever

__all__ = ["CONFIGURABLE_FIELDS", "ScopedRetriever", "configurable_retriever"]

#: The ids of the only per-request options: passages, search mode, source filter.
CONFIGURABLE_FIELDS = ("k", "mode", "source")


class _Pool:
    """One retriever per search mode, sharing the embedding model; shared by every copy."""

    def __init__(self, base: BaseRetriever) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.by_mode: dict[str, BaseRetriever] = {}

    def retriever(self, mode: str | None) -> BaseRetriever:
        from milvus_rag.retriever import MilvusRAGRetriever

        base = self.base
        if mode is None or (isinstance(base, MilvusRAGRetriever) and mode == base.mode):
            return base
        if not isinstance(base, MilvusRAGRetriever):
            raise ConfigError("a per-request mode needs a MilvusRAGRetriever")
        with self.lock:
            found = self.by_mode.get(mode)
            if found is None:
                if base.embeddings is None and base.settings is not None:
                    from milvus_rag.embeddings import embeddings_from_settings

                    base.embeddings = embeddings_from_settings(base.settings)  # one model
                found = base.model_copy(update={"mode": mode, "vector_store": None})
                self.by_mode[mode] = found
        return found


class ScopedRetriever(BaseRetriever):
    """A retriever whose ``k``, ``mode`` and ``source`` may be set per call.

    Unset fields (``None``) keep the wrapped retriever's own values. Build it
    with :func:`configurable_retriever`, which exposes exactly these three fields.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: Any = Field(..., exclude=True)
    """The wrapped retriever (a ``MilvusRAGRetriever`` for ``mode`` and ``source``)."""
    k: int | None = None
    """Passages to retrieve (up to ``retrieval.max_k``)."""
    mode: Literal["dense", "hybrid"] | None = None
    """``dense`` or ``hybrid``."""
    source: list[str] | None = None
    """Only sources under these path prefixes or globs (``en/faq/``, ``en/**/*.md``)."""
    pool: Any = Field(default=None, exclude=True)

    def model_post_init(self, context: Any) -> None:
        if self.pool is None:
            self.pool = _Pool(self.base)

    def _resolve(self) -> BaseRetriever:
        """The retriever for this call's mode and sources (opens a store on first use)."""
        from milvus_rag.retriever import MilvusRAGRetriever

        if self.k is not None and self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        retriever = self.pool.retriever(self.mode)
        if not self.source:
            return cast(BaseRetriever, retriever)
        if not isinstance(retriever, MilvusRAGRetriever):
            raise ConfigError("a per-request source filter needs a MilvusRAGRetriever")
        from milvus_rag.filters import all_of, any_of, source_glob

        retriever.store()  # open before copying, so the copy shares the store
        narrowed = any_of(*(source_glob(pattern) for pattern in self.source))
        return retriever.model_copy(update={"expr": all_of(retriever.expr, narrowed)})

    def _options(self) -> dict[str, Any]:
        return {"k": self.k} if self.k is not None else {}

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        retriever = self._resolve()
        return retriever.invoke(query, {"callbacks": run_manager.get_child()}, **self._options())

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        from langchain_core.runnables.config import run_in_executor

        retriever = await run_in_executor(None, self._resolve)
        return await retriever.ainvoke(
            query, {"callbacks": run_manager.get_child()}, **self._options()
        )


def configurable_retriever(retriever: MilvusRAGRetriever | BaseRetriever) -> Runnable[Any, Any]:
    """``retriever`` with ``k``, ``mode`` and ``source`` configurable per call (nothing else).

    Pass values as ``config={"configurable": {"k": 5, "mode": "hybrid",
    "source": ["en/faq/"]}}``; LangServe routes over it expose them the same way.
    """
    return ScopedRetriever(base=retriever).configurable_fields(
        k=ConfigurableField(
            id="k", name="k", description="Passages to retrieve (1 to retrieval.max_k)."
        ),
        mode=ConfigurableField(id="mode", name="mode", description="dense or hybrid search."),
        source=ConfigurableField(
            id="source",
            name="source",
            description="Only sources under these path prefixes or globs, e.g. en/faq/.",
        ),
    )
