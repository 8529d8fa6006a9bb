"""Every read and write of a collection's rows: inserts, upserts, deletes, flushes,
paged iteration, vector fetches and searches (and whether a collection exists)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from milvus_rag.schema import ID_FIELD, SPARSE_FIELD, TEXT_FIELD, VECTOR_FIELD

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from pymilvus import MilvusClient

__all__ = [
    "ROWS_PAGE",
    "RowWriter",
    "delete_ids",
    "fetch_vectors",
    "flush_collection",
    "has_collection",
    "insert_rows",
    "iter_rows",
    "list_collections",
    "metadata_keys",
    "row_fields",
    "search_rows",
    "upsert_rows",
]

#: Rows per page of a query iterator or a delete.
ROWS_PAGE = 4096


def has_collection(client: MilvusClient, collection: str) -> bool:
    """Whether ``collection`` exists."""
    return bool(client.has_collection(collection))


def list_collections(client: MilvusClient) -> list[str]:
    """The collections the client may see (a cheap call that needs a signed-in user)."""
    return [str(name) for name in client.list_collections()]


def insert_rows(client: MilvusClient, collection: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (their vectors included)."""
    client.insert(collection, rows)


def upsert_rows(client: MilvusClient, collection: str, rows: list[dict[str, Any]]) -> None:
    """Insert or replace ``rows`` by id (a resumed copy writes each row once).

    On a partition-keyed collection of a Milvus server before 2.4, whose upserts put rows
    in the wrong partition (:func:`~milvus_rag.store.info.upsert_misroutes`), the rows
    are deleted by id and inserted.
    """
    from milvus_rag.store.info import upsert_misroutes

    if rows and upsert_misroutes(client, collection):
        client.delete(collection, ids=[row[ID_FIELD] for row in rows])
        client.insert(collection, rows)
        return
    client.upsert(collection, rows)


class RowWriter:
    """Writes batches of rows with up to ``in_flight`` inserts (or upserts) running at once.

    An engine that stores concurrent inserts in parallel (a Milvus server, Milvus Lite
    2.x: :func:`~milvus_rag.store.info.takes_concurrent_writes`) takes more rows a second
    this way, and the caller prepares its next batch (reads a page, embeds chunks) while
    the last ones are written. ``done`` callbacks run in the caller's thread, in the
    order the batches were given, each once its batch is stored; a failed write is
    raised there, by :meth:`write` or :meth:`drain`. On an engine that takes one write
    at a time (Milvus Lite 3.x) ``in_flight`` is 1: each write is done before
    :meth:`write` returns. Leaving the ``with`` block drains
    (or, on an error, waits for the writes still running), so no write outlives it.

    Example:
        .. code-block:: python

            with RowWriter(client, "docs", in_flight=2) as writer:
                for rows in batches:
                    writer.write(rows, done=lambda n=len(rows): print(n, "rows stored"))
    """

    def __init__(
        self, client: MilvusClient, collection: str, *, in_flight: int = 1, upsert: bool = False
    ) -> None:
        from milvus_rag.store.info import takes_concurrent_writes

        self.client = client
        self.collection = collection
        self.in_flight = max(1, in_flight)
        if self.in_flight > 1 and not takes_concurrent_writes(client):
            self.in_flight = 1
        self._write = upsert_rows if upsert else insert_rows
        self._pending: deque[tuple[Future[None], Callable[[], None] | None]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def write(self, rows: list[dict[str, Any]], done: Callable[[], None] | None = None) -> None:
        """Hand ``rows`` over: written now (one in flight) or by a worker thread, once
        fewer than ``in_flight`` writes are running (the oldest is waited for)."""
        if self.in_flight == 1:
            self._write(self.client, self.collection, rows)
            if done is not None:
                done()
            return
        while len(self._pending) >= self.in_flight:
            self._complete_oldest()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="milvus-rag-write")
        future = self._pool.submit(self._write, self.client, self.collection, rows)
        self._pending.append((future, done))

    def drain(self) -> None:
        """Wait for every write given so far and run their callbacks."""
        while self._pending:
            self._complete_oldest()

    def _complete_oldest(self) -> None:
        future, done = self._pending.popleft()
        future.result()
        if done is not None:
            done()

    def close(self) -> None:
        """Wait for the writes still running, without their callbacks, and stop the threads."""
        wait([future for future, _ in self._pending])
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.drain()
        finally:
            self.close()


def delete_ids(client: MilvusClient, collection: str, ids: Sequence[str]) -> None:
    """Delete the rows with these ids, in pages."""
    ordered = sorted(ids)
    for start in range(0, len(ordered), ROWS_PAGE):
        client.delete(collection, ids=ordered[start : start + ROWS_PAGE])


def flush_collection(client: MilvusClient, collection: str) -> None:
    """Seal what was written (searches and a reopened Lite file see it)."""
    client.flush(collection)


def iter_rows(
    client: MilvusClient,
    collection: str,
    *,
    filter: str = "",
    output_fields: Sequence[str] = ("*",),
    page: int = ROWS_PAGE,
) -> Iterator[list[dict[str, Any]]]:
    """The rows matching ``filter``, in pages of at most ``page`` rows (a query
    iterator, closed however the caller stops)."""
    iterator = client.query_iterator(
        collection, batch_size=page, filter=filter, output_fields=list(output_fields)
    )
    try:
        while batch := iterator.next():
            yield batch
    finally:
        iterator.close()


def fetch_vectors(
    client: MilvusClient, collection: str, ids: Sequence[Any]
) -> dict[Any, list[float]]:
    """The dense vectors of the rows with these ids, by id."""
    rows = client.get(collection, ids=list(ids), output_fields=[VECTOR_FIELD])
    return {row[ID_FIELD]: row[VECTOR_FIELD] for row in rows}


def row_fields(client: MilvusClient, collection: str) -> list[str]:
    """The output fields that give a row without its vectors: scalars and the dynamic ones.

    (``"*"`` would ship every vector back with each hit, a few milliseconds a search.)
    """
    from pymilvus import DataType

    vectors = {
        DataType.FLOAT_VECTOR,
        DataType.FLOAT16_VECTOR,
        DataType.BFLOAT16_VECTOR,
        DataType.BINARY_VECTOR,
        DataType.SPARSE_FLOAT_VECTOR,
    }
    described = client.describe_collection(collection)
    fields = [f["name"] for f in described.get("fields", []) if f.get("type") not in vectors]
    if described.get("enable_dynamic_field"):
        fields.append("$meta")
    return fields


def metadata_keys(client: MilvusClient, collection: str, sample: int = 1000) -> set[str]:
    """The metadata keys the chunks hold (of the first ``sample`` rows): what a
    ``--filter KEY=VALUE`` can match. The text, vector and id fields are left out.
    """
    rows = client.query(
        collection, filter="", output_fields=row_fields(client, collection), limit=sample
    )
    keys = {key for row in rows for key in row}
    return keys - {ID_FIELD, TEXT_FIELD, VECTOR_FIELD, SPARSE_FIELD, "$meta"}


def search_rows(
    client: MilvusClient,
    collection: str,
    field: str,
    query: Any,
    limit: int,
    expr: str | None = None,
    output_fields: list[str] | None = None,
    filter_params: dict[str, Any] | None = None,
) -> list[tuple[Document, float]]:
    """Search one vector field (``query``: a vector, or text for the BM25 field).

    Returns ``(Document, distance)`` pairs best first; each document holds the
    row's text and its other fields as metadata (``id`` included).
    ``output_fields`` defaults to :func:`row_fields` (pass them to save a call);
    ``filter_params`` fills a templated ``expr`` (see :func:`~milvus_rag.store.info.supports_filter_templates`).
    """
    from langchain_core.documents import Document

    metric = "BM25" if field == SPARSE_FIELD else None
    params: dict[str, Any] = {"metric_type": metric} if metric else {}
    extra: dict[str, Any] = {"filter_params": filter_params} if filter_params else {}
    hits = client.search(
        collection,
        [query],
        anns_field=field,
        limit=limit,
        filter=expr or "",
        output_fields=output_fields or row_fields(client, collection),
        search_params=params,
        **extra,
    )[0]
    out = []
    for hit in hits:
        entity = dict(hit.get("entity") or {})
        entity.pop(VECTOR_FIELD, None)
        entity.pop(SPARSE_FIELD, None)
        text = entity.pop(TEXT_FIELD, "")
        entity.setdefault(ID_FIELD, hit.get("id"))
        out.append((Document(page_content=text, metadata=entity), float(hit["distance"])))
    return out
