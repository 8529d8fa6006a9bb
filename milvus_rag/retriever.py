"""The retriever: a LangChain ``BaseRetriever`` over the Milvus collection.

Every returned ``Document`` carries ``metadata["score"]`` (the Milvus distance:
higher is closer for IP and COSINE, lower for L2) next to the chunk's own
metadata (``source``, ``heading``, ``title``, ``position``, ``format``, front matter...)
and its id (``Document.id``, ``metadata["id"]``). The ingest bookkeeping stays in Milvus:
``origin`` (the ingested folder's absolute path) only with ``include_origin``
(``retrieval.include_origin``), ``source_hash``, ``chunker``, ``chunk_count``,
``chunk_set`` and ``view`` never.

The store is opened on first use, so building a retriever (or a chain over it)
touches neither Milvus nor the embedding model.

Example:
    .. code-block:: python

        from milvus_rag import MilvusRAGRetriever, load_settings

        retriever = MilvusRAGRetriever.from_settings(load_settings())
        for doc in retriever.invoke("How is data stored in milvus?"):
            print(doc.metadata["score"], doc.metadata["source"])
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, PrivateAttr

from milvus_rag.choices import Fusion, Metric, RetrievalMode, SearchType
from milvus_rag.embeddings import MilvusModelEmbeddings
from milvus_rag.errors import ConfigError
from milvus_rag.filters import Expr
from milvus_rag.loaders.views import MAX_VIEWS, question_of
from milvus_rag.settings import MilvusSettings, RetrievalSettings, Settings
from milvus_rag.store import (
    BOOKKEEPING_FIELDS,
    HEADING_FIELD,
    ID_FIELD,
    ORIGIN_FIELD,
    POSITION_FIELD,
    SOURCE_FIELD,
    SPARSE_FIELD,
    VECTOR_FIELD,
    fetch_vectors,
    row_fields,
    search_rows,
)
from milvus_rag.telemetry import step

if TYPE_CHECKING:
    from langchain_milvus import Milvus

__all__ = ["MilvusRAGRetriever"]

# Every default is the settings' own (defined once, in milvus_rag/settings/).
_RETRIEVAL = RetrievalSettings.model_fields
# What a document leaves out: the ingest bookkeeping, and the origin unless asked for.
_HIDDEN_WITH_ORIGIN = BOOKKEEPING_FIELDS | {ORIGIN_FIELD}


@contextmanager
def _legacy_rankers_ok() -> Iterator[None]:
    """Silence langchain-milvus's deprecation notice for ``ranker_type``.

    ``RRFRanker`` / ``WeightedRanker`` work on Milvus 2.4+ servers and Milvus Lite;
    the Function rerankers it recommends need Milvus 2.6.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ranker_type.*", category=DeprecationWarning)
        yield


class MilvusRAGRetriever(BaseRetriever):
    """Retrieve the chunks closest to a question, with their scores.

    Either give a ready ``vector_store`` or ``settings`` (+ optional
    ``embeddings``) and the store is opened lazily on the first query.

    Example:
        .. code-block:: python

            from milvus_rag import MilvusRAGRetriever, load_settings

            settings = load_settings(overrides={"retrieval": {"top_k": 5}})
            retriever = MilvusRAGRetriever.from_settings(settings)
            docs = retriever.invoke("What is a partition key?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vector_store: VectorStore | None = None
    """A langchain-milvus ``Milvus`` store; opened from ``settings`` when ``None``."""
    settings: Settings | None = Field(default=None, exclude=True)
    embeddings: MilvusModelEmbeddings | None = Field(default=None, exclude=True)
    k: int = _RETRIEVAL["top_k"].default
    mode: RetrievalMode = _RETRIEVAL["mode"].default
    search_type: SearchType = _RETRIEVAL["search_type"].default
    fetch_k: int = _RETRIEVAL["fetch_k"].default
    lambda_mult: float = _RETRIEVAL["lambda_mult"].default
    score_threshold: float | None = _RETRIEVAL["score_threshold"].default
    expr: Expr | str | None = None
    """A Milvus boolean filter expression (build it with ``milvus_rag.filters``)."""
    metric: Metric = MilvusSettings.model_fields["metric"].default
    fusion: Fusion = _RETRIEVAL["fusion"].default
    """How hybrid mode fuses dense and BM25 results: ``zscore`` (each list's scores
    standardised, then weighted and summed), or Milvus's ``rrf`` / ``weighted`` rankers."""
    rrf_k: int = _RETRIEVAL["rrf_k"].default
    weights: tuple[float, float] = _RETRIEVAL["weights"].default
    """Dense and BM25 weights for the ``zscore`` and ``weighted`` fusions."""
    diverse: bool = _RETRIEVAL["diverse"].default
    """At most one chunk per unit (a page, or an answer under a question heading) in
    the top ``k``; more chunks of a unit follow only when units run out."""
    max_k: int = _RETRIEVAL["max_k"].default
    include_origin: bool = _RETRIEVAL["include_origin"].default
    """Keep ``metadata["origin"]`` (the ingested folder's absolute path, or the URL) in
    the documents; the other ingest bookkeeping (``store.BOOKKEEPING_FIELDS``) never is."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _templates: bool = PrivateAttr(default=False)
    _row_fields: list[str] | None = PrivateAttr(default=None)
    _own_store: bool = PrivateAttr(default=False)
    _executor: ThreadPoolExecutor | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, embeddings: Any = None, **overrides: Any
    ) -> MilvusRAGRetriever:
        """Build from the ``retrieval`` section; ``overrides`` win (``k``, ``expr``...)."""
        r = settings.retrieval
        options: dict[str, Any] = {
            "settings": settings,
            "embeddings": embeddings,
            "k": r.top_k,
            "mode": r.mode,
            "search_type": r.search_type,
            "fetch_k": r.fetch_k,
            "lambda_mult": r.lambda_mult,
            "score_threshold": r.score_threshold,
            "metric": settings.milvus.metric,
            "fusion": r.fusion,
            "rrf_k": r.rrf_k,
            "weights": r.weights,
            "diverse": r.diverse,
            "max_k": r.max_k,
            "include_origin": r.include_origin,
        }
        options.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**options)

    def store(self) -> Milvus:
        """The underlying store, opened on first call."""
        if self.vector_store is None:
            with self._lock:
                if self.vector_store is None:
                    store = self._open()
                    if self.mode == "hybrid" and len(store.vector_fields) < 2:
                        self.mode = "dense"  # the server has no BM25: the store said why
                    from milvus_rag.store import supports_filter_templates

                    self._templates = supports_filter_templates(store.client)
                    self._own_store = True  # our schema: search it through the client
                    self.vector_store = store
        return cast("Milvus", self.vector_store)

    def ensure_not_empty(self) -> None:
        """Open the store and raise :class:`EmptyCollectionError` if it holds no chunks."""
        from milvus_rag.errors import EmptyCollectionError
        from milvus_rag.store import count_entities

        store = self.store()
        if count_entities(store.client, store.collection_name) == 0:
            raise EmptyCollectionError(
                f"collection {store.collection_name} is empty: run `milvus-rag ingest SOURCE` first"
            )

    def _open(self) -> Milvus:
        from milvus_rag.embeddings import embeddings_from_settings
        from milvus_rag.store import open_vector_store

        if self.settings is None:
            raise ConfigError("MilvusRAGRetriever needs a vector_store or settings")
        if self.embeddings is None:
            self.embeddings = embeddings_from_settings(self.settings)
        # The settings' own mode is passed as None: a default hybrid adapts to a dense collection.
        mode = None if self.mode == self.settings.retrieval.mode else self.mode
        return open_vector_store(self.settings, self.embeddings, mode=mode)

    def _search_kwargs(self, k: int) -> dict[str, Any]:
        if k > self.max_k:
            raise ConfigError(f"k={k} is above retrieval.max_k={self.max_k}")
        kwargs: dict[str, Any] = {"k": k}
        from milvus_rag.scopes import narrowed, scope_filter

        if scope_filter() is not None:  # a server request: its key's scopes, always
            kwargs["expr"] = narrowed(str(self.expr) if self.expr else None)
        elif self.expr:
            from milvus_rag.filters import Expr

            if isinstance(self.expr, Expr) and self._templates and self.mode == "dense":
                kwargs.update(expr=self.expr.template, filter_params=self.expr.params)
            else:
                kwargs["expr"] = str(self.expr)
        if self.mode == "hybrid" and self.fusion != "zscore":
            kwargs["fetch_k"] = max(self.fetch_k, k)
            if self.fusion == "rrf":
                kwargs.update(ranker_type="rrf", ranker_params={"k": self.rrf_k})
            else:
                kwargs.update(ranker_type="weighted", ranker_params={"weights": list(self.weights)})
        return kwargs

    def _keep(self, score: float) -> bool:
        if self.score_threshold is None or self.mode == "hybrid":
            return True
        if self.metric == "L2":
            return score <= self.score_threshold
        return score >= self.score_threshold

    def _to_documents(self, pairs: list[tuple[Document, float]], k: int) -> list[Document]:
        """The ``k`` best distinct chunks, one per unit first when ``diverse``.

        A chunk found by several of its views counts once, with its best score.
        """
        lower_is_better = self.metric == "L2" and self.mode == "dense"
        # Best first, ties broken by id: the same collection gives the same order anywhere.
        pairs = sorted(
            pairs,
            key=lambda p: (p[1] if lower_is_better else -p[1], str(p[0].metadata.get(ID_FIELD))),
        )
        chunks: list[tuple[Document, float]] = []
        seen: set[tuple[Any, ...]] = set()
        for doc, score in pairs:
            if not self._keep(score):
                continue
            key = _chunk_key(doc)
            if key not in seen:
                seen.add(key)
                chunks.append((doc, score))
        if self.diverse:
            chunks = _one_per_unit(chunks)
        hidden = BOOKKEEPING_FIELDS if self.include_origin else _HIDDEN_WITH_ORIGIN
        return [
            Document(
                page_content=doc.page_content,
                metadata={
                    **{key: v for key, v in doc.metadata.items() if key not in hidden},
                    "score": float(score),
                },
                id=doc.metadata.get(ID_FIELD),
            )
            for doc, score in chunks[:k]
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._search(query, int(kwargs.get("k", self.k)))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # The sync path in a worker thread: pymilvus's async client binds itself to
        # the first event loop that uses it, so a second ``asyncio.run`` would fail.
        from langchain_core.runnables.config import run_in_executor

        return await run_in_executor(None, self._search, query, int(kwargs.get("k", self.k)))

    def _search(self, query: str, k: int) -> list[Document]:
        with step("retrieve", k=k) as done:
            store = self.store()
            done.set(collection=store.collection_name, mode=self.mode)
            docs = self._documents(store, query, k)
            done.set(rows=len(docs))
        return docs

    def _documents(self, store: Milvus, query: str, k: int) -> list[Document]:
        search = self._search_kwargs(k)
        if self.search_type == "mmr" and self.mode == "dense":
            return self._mmr(store, query, search)
        # Each chunk is stored once per view (its text, a question heading), and
        # diversity skips further chunks of a unit: ask for enough rows.
        search["k"] = k * MAX_VIEWS * (3 if self.diverse else 1)
        if self.mode == "hybrid" and self.fusion == "zscore":
            return self._to_documents(self._zscore_hybrid(store, query, search), k)
        if self.mode == "hybrid" and self.fusion == "rrf" and self._own_store:
            return self._to_documents(self._rrf_hybrid(store, query, search), k)
        if self.mode == "dense" and self._own_store:
            return self._to_documents(self._dense(store, query, search), k)
        with self._searching(store, search["k"]) as done, _legacy_rankers_ok():
            pairs = store.similarity_search_with_score(query, **search)
            done.set(rows=len(pairs))
        return self._to_documents(pairs, k)

    def _searching(self, store: Milvus, limit: int) -> Any:
        """The step of a Milvus search (its span's collection, mode, k; rows set after)."""
        return step("search", collection=store.collection_name, mode=self.mode, k=limit)

    def _fields(self, store: Milvus) -> list[str]:
        """The row fields a search returns (every field but the vectors), read once."""
        if self._row_fields is None:
            self._row_fields = row_fields(store.client, store.collection_name)
        return self._row_fields

    def _dense(
        self, store: Milvus, query: str, search: dict[str, Any]
    ) -> list[tuple[Document, float]]:
        """Dense search through the store's client, on a collection of our own schema.

        The same request langchain-milvus's ``similarity_search_with_score`` sends,
        without its second pass over every returned row (about 1 ms a query, a tenth
        of a search on Milvus Lite).
        """
        vector = store.embeddings.embed_query(query)  # type: ignore[union-attr]
        with self._searching(store, search["k"]) as done:
            rows = search_rows(
                store.client,
                store.collection_name,
                VECTOR_FIELD,
                vector,
                search["k"],
                search.get("expr"),
                self._fields(store),
                search.get("filter_params"),
            )
            done.set(rows=len(rows))
        return rows

    def _zscore_hybrid(
        self, store: Milvus, query: str, search: dict[str, Any]
    ) -> list[tuple[Document, float]]:
        """Dense and BM25 results fused by standardised scores.

        Each list's scores become z-scores (how far above its own mean, in its own
        standard deviations), so a query's BM25 scores weigh by how much they
        stand out, whatever their scale; a chunk missing from a list gets that
        list's lowest z-score. Rank fusion instead gives BM25's top hit the same
        weight as dense's however weak its match, which pulls paraphrased
        questions to pages that merely share their words.
        """
        rows = max(self.fetch_k, search["k"]) * 2
        dense, sparse = self._both_lists(store, query, rows, search.get("expr"))
        w_dense, w_sparse = self.weights
        fused: dict[str, float] = {}
        docs: dict[str, Document] = {}
        for hits, weight in ((dense, w_dense), (sparse, w_sparse)):
            z = _zscores([score for _, score in hits])
            floor = min(z, default=0.0)
            for (doc, _), value in zip(hits, z, strict=True):
                docs.setdefault(doc.metadata[ID_FIELD], doc)
                fused[doc.metadata[ID_FIELD]] = fused.get(doc.metadata[ID_FIELD], 0.0) + weight * (
                    value - floor
                )
        ranked = sorted(fused, key=lambda i: -fused[i])
        return [(docs[i], fused[i]) for i in ranked]

    def _rrf_hybrid(
        self, store: Milvus, query: str, search: dict[str, Any]
    ) -> list[tuple[Document, float]]:
        """Dense and BM25 results fused by reciprocal rank, as Milvus's ``RRFRanker``.

        Each list holds ``fetch_k`` rows; a row scores ``1 / (rrf_k + rank)`` (rank
        from 1) in each list it is in, summed. Done here rather than by Milvus's
        hybrid search so that the BM25 search runs while the question is embedded.
        """
        rows = search.get("fetch_k") or max(self.fetch_k, search["k"])
        fused: dict[str, float] = {}
        docs: dict[str, Document] = {}
        for hits in self._both_lists(store, query, rows, search.get("expr")):
            for rank, (doc, _) in enumerate(hits, start=1):
                key = doc.metadata[ID_FIELD]
                docs.setdefault(key, doc)
                fused[key] = fused.get(key, 0.0) + 1.0 / (self.rrf_k + rank)
        ranked = sorted(fused, key=lambda i: -fused[i])
        return [(docs[i], fused[i]) for i in ranked[: search["k"]]]

    def _both_lists(
        self, store: Milvus, query: str, rows: int, expr: str | None
    ) -> tuple[list[tuple[Document, float]], list[tuple[Document, float]]]:
        """The dense and the BM25 hits of ``query``, ``rows`` each.

        The BM25 search needs only the question's text: it runs in a worker thread
        while the question is embedded (both wait outside the GIL, in ONNX Runtime
        and in Milvus), then the dense search runs.
        """
        client, name = store.client, store.collection_name
        fields = self._fields(store)
        sparse = self._pool().submit(
            search_rows, client, name, SPARSE_FIELD, query, rows, expr, fields
        )
        try:
            vector = store.embeddings.embed_query(query)  # type: ignore[union-attr]
            with self._searching(store, rows) as done:
                dense = search_rows(client, name, VECTOR_FIELD, vector, rows, expr, fields)
                found = sparse.result()
                done.set(rows=len(dense) + len(found))
        except BaseException:
            wait([sparse])  # its error, if any, is not the one to report
            raise
        return dense, found

    def _pool(self) -> ThreadPoolExecutor:
        """This retriever's worker threads for the BM25 searches, started on first use."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=4, thread_name_prefix="milvus-rag-bm25"
                    )
        return self._executor

    def _mmr(self, store: Milvus, query: str, search: dict[str, Any]) -> list[Document]:
        """Maximal marginal relevance over ``fetch_k`` candidates, keeping scores."""
        import numpy as np
        from langchain_milvus.vectorstores.milvus import maximal_marginal_relevance

        k = search["k"]
        query_vector = store.embeddings.embed_query(query)  # type: ignore[union-attr]
        with self._searching(store, max(self.fetch_k, k)) as done:
            pairs = store.similarity_search_with_score_by_vector(
                query_vector, **{**search, "k": max(self.fetch_k, k)}
            )
            done.set(rows=len(pairs))
        if not pairs:
            return []
        best: dict[tuple[Any, ...], tuple[Document, float]] = {}
        for doc, score in pairs:
            best.setdefault(_chunk_key(doc), (doc, score))
        pairs = list(best.values())
        ids = [doc.metadata.get(ID_FIELD) for doc, _ in pairs]
        by_id = fetch_vectors(store.client, store.collection_name, ids)
        vectors = [by_id[i] for i in ids]
        chosen = maximal_marginal_relevance(
            np.array(query_vector), vectors, lambda_mult=self.lambda_mult, k=k
        )
        return self._to_documents([pairs[i] for i in chosen], k)


def _zscores(scores: list[float]) -> list[float]:
    """Standardised scores, oriented so that the first (best) hit scores highest."""
    if not scores:
        return []
    if scores[0] < scores[-1]:  # a best-first list of ascending values: lower is better
        scores = [-s for s in scores]
    mean = sum(scores) / len(scores)
    spread = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5 or 1.0
    return [(s - mean) / spread for s in scores]


def _unit_key(doc: Document) -> tuple[Any, ...]:
    """The unit a chunk belongs to: its page, or its answer under a question heading."""
    meta = doc.metadata
    heading = str(meta.get(HEADING_FIELD, ""))
    if question_of(heading) is not None:
        return (meta.get(ORIGIN_FIELD), meta.get(SOURCE_FIELD), heading)
    return (meta.get(ORIGIN_FIELD), meta.get(SOURCE_FIELD))


def _one_per_unit(chunks: list[tuple[Document, float]]) -> list[tuple[Document, float]]:
    """Best-first chunks with each unit's best first; the others after, in order."""
    first: list[tuple[Document, float]] = []
    rest: list[tuple[Document, float]] = []
    units: set[tuple[Any, ...]] = set()
    for doc, score in chunks:
        unit = _unit_key(doc)
        (rest if unit in units else first).append((doc, score))
        units.add(unit)
    return first + rest


def _chunk_key(doc: Document) -> tuple[Any, ...]:
    """What identifies a chunk across its views (rows without sync fields stay distinct)."""
    meta = doc.metadata
    if POSITION_FIELD in meta and SOURCE_FIELD in meta:
        return (meta.get(ORIGIN_FIELD), meta[SOURCE_FIELD], meta[POSITION_FIELD])
    return ("id", meta.get(ID_FIELD, id(doc)))
