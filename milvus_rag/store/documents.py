"""The source files a collection holds (listing and deleting them) and the record of
the ingests that wrote them (which origin, glob and splitter, when)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from milvus_rag.schema import CHUNKER_FIELD, ID_FIELD, ORIGIN_FIELD, POSITION_FIELD, SOURCE_FIELD
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD
from milvus_rag.store.meta import meta_delete, meta_rows, meta_write, property_record, record_key
from milvus_rag.store.rows import ROWS_PAGE

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = [
    "INGESTS_PROPERTY",
    "MAX_RECORDED_RUNS",
    "StoredSource",
    "delete_sources",
    "ingest_records",
    "list_sources",
    "record_ingest",
]


#: The collection property where milvus-rag kept the ingest records before the metadata
#: collection (read as a fallback).
INGESTS_PROPERTY = "milvus_rag.ingests"
#: Ingest runs (origin and glob) remembered (the latest are kept).
MAX_RECORDED_RUNS = 500


class StoredSource:
    """One source file in the collection: where it came from, its scope, rows and chunks."""

    __slots__ = ("chunkers", "ids", "origin", "positions", "scope", "source")

    def __init__(self, source: str, origin: str, scope: str = DEFAULT_SCOPE) -> None:
        self.source = source
        self.origin = origin
        self.scope = scope
        self.ids: list[str] = []
        self.positions: set[int] = set()
        self.chunkers: set[str] = set()

    @property
    def chunks(self) -> int:
        """Chunks of the file: rows holding another view of a chunk are not counted."""
        return len(self.positions) if self.positions else len(self.ids)


def list_sources(
    client: MilvusClient, collection: str, expr: str | None = None
) -> list[StoredSource]:
    """The source files stored in ``collection`` (those matching ``expr``, within the
    current request's scopes), sorted by path.

    Reads every row's ``source``, ``origin``, ``scope``, ``position`` and ``chunker`` in
    pages; two origins (or scopes) holding the same path are two entries.
    """
    from milvus_rag.scopes import narrowed

    found: dict[tuple[str, str, str], StoredSource] = {}
    iterator = client.query_iterator(
        collection,
        batch_size=ROWS_PAGE,
        filter=narrowed(expr) or "",
        output_fields=[
            ID_FIELD,
            SOURCE_FIELD,
            ORIGIN_FIELD,
            SCOPE_FIELD,
            POSITION_FIELD,
            CHUNKER_FIELD,
        ],
    )
    try:
        while batch := iterator.next():
            for row in batch:
                scope = str(row.get(SCOPE_FIELD) or DEFAULT_SCOPE)
                key = (str(row.get(SOURCE_FIELD)), str(row.get(ORIGIN_FIELD)), scope)
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = StoredSource(*key)
                entry.ids.append(str(row[ID_FIELD]))
                if isinstance(row.get(POSITION_FIELD), int):
                    entry.positions.add(row[POSITION_FIELD])
                if row.get(CHUNKER_FIELD):
                    entry.chunkers.add(str(row[CHUNKER_FIELD]))
    finally:
        iterator.close()
    return sorted(found.values(), key=lambda s: (s.source, s.origin, s.scope))


def delete_sources(client: MilvusClient, collection: str, sources: list[StoredSource]) -> int:
    """Delete every row of ``sources`` (from :func:`list_sources`); returns how many.

    The chunks hold the ingest's sync state, so the next ingest of those files writes
    them anew. The ingest records of an origin left with no chunk are dropped
    (:data:`INGESTS_PROPERTY`).
    """
    from milvus_rag.filters import eq

    ids = [cid for entry in sources for cid in entry.ids]
    for start in range(0, len(ids), ROWS_PAGE):
        client.delete(collection, ids=ids[start : start + ROWS_PAGE])
    client.flush(collection)
    records = _ingest_rows(client, collection)
    recorded = {run["origin"] for run in records["runs"]}
    gone = {
        origin
        for origin in {entry.origin for entry in sources} & recorded
        if not client.query(
            collection, filter=eq(ORIGIN_FIELD, origin), output_fields=[ID_FIELD], limit=1
        )
    }
    if gone:
        meta_write(client, collection, _legacy_writes(collection, records, gone))
        meta_delete(
            client,
            [
                key
                for key, run in zip(records["keys"], records["runs"], strict=True)
                if key is not None and run["origin"] in gone
            ],
        )
    return len(ids)


def ingest_records(client: MilvusClient, collection: str) -> dict[str, Any]:
    """What :func:`record_ingest` kept, oldest run first::

    {"runs": [{"origin": ..., "glob": ... or None, "at": ISO time, "splitter": ...}],
     "chunkers": {chunker fingerprint: splitter name}}
    """
    return {key: value for key, value in _ingest_rows(client, collection).items() if key != "keys"}


def _ingest_rows(client: MilvusClient, collection: str) -> dict[str, Any]:
    """:func:`ingest_records` plus ``keys``: each run's record key (``None`` for records
    still in the collection's properties, where milvus-rag before the metadata
    collection kept them)."""
    rows = meta_rows(client, collection)
    runs = [(k, v) for k, v in rows.items() if k.startswith(record_key(collection, "run", ""))]
    chunkers = [v for k, v in rows.items() if k.startswith(record_key(collection, "chunker", ""))]
    if runs or chunkers:
        runs.sort(key=lambda item: (int(item[1].get("n", 0)), item[0]))
        return {
            "runs": [{k: v for k, v in run.items() if k != "n"} for _, run in runs],
            "chunkers": {
                str(c.get("fingerprint")): str(c.get("splitter"))
                for c in chunkers
                if c.get("fingerprint")
            },
            "keys": [key for key, _ in runs],
        }
    record = property_record(client, collection, INGESTS_PROPERTY) or {}
    old = record.get("runs")
    legacy = [r for r in old if isinstance(r, dict)] if isinstance(old, list) else []
    kept = record.get("chunkers")
    return {
        "runs": legacy,
        "chunkers": kept if isinstance(kept, dict) else {},
        "keys": [None] * len(legacy),
    }


def _run_key(collection: str, origin: str, glob: str | None) -> str:
    import hashlib

    digest = hashlib.sha256(json.dumps([origin, glob]).encode()).hexdigest()[:40]
    return record_key(collection, "run", digest)


def _chunker_key(collection: str, chunker: str) -> str:
    import hashlib

    return record_key(collection, "chunker", hashlib.sha256(chunker.encode()).hexdigest()[:40])


def _legacy_writes(
    collection: str, found: dict[str, Any], skip: set[str] | None = None
) -> dict[str, tuple[str, Any]]:
    """The records an older milvus-rag kept in the collection's properties, as records of
    :data:`META_COLLECTION` (runs of the ``skip`` origins left out); none when the
    records are there already."""

    if not any(key is None for key in found["keys"]):
        return {}
    writes: dict[str, tuple[str, Any]] = {}
    base = time.time_ns() - len(found["runs"])
    for number, run in enumerate(found["runs"]):
        if skip and run.get("origin") in skip:
            continue
        key = _run_key(collection, str(run.get("origin")), run.get("glob"))
        writes[key] = ("run", dict(run, n=base + number))
    for fingerprint, name in found["chunkers"].items():
        payload = {"fingerprint": fingerprint, "splitter": name}
        writes[_chunker_key(collection, fingerprint)] = ("chunker", payload)
    return writes


def record_ingest(
    client: MilvusClient,
    collection: str,
    *,
    origin: str,
    glob: str | None,
    splitter: str,
    chunker: str,
    at: str | None = None,
) -> None:
    """Record that ``origin`` (the files matching ``glob``) was just ingested into
    ``collection`` with ``splitter``; ``at`` defaults to now (ISO 8601, UTC).

    Kept in :data:`META_COLLECTION` (chunks are not touched), one run per origin and
    glob (the latest, :data:`MAX_RECORDED_RUNS` at most), read back by
    :func:`ingest_records`; ``milvus-rag sources`` shows it.
    """
    from datetime import datetime, timezone

    found = _ingest_rows(client, collection)
    writes = _legacy_writes(collection, found)
    when = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = {"origin": origin, "glob": glob, "at": when, "splitter": splitter, "n": time.time_ns()}
    writes[_run_key(collection, origin, glob)] = ("run", run)
    payload = {"fingerprint": chunker, "splitter": splitter}
    writes[_chunker_key(collection, chunker)] = ("chunker", payload)
    meta_write(client, collection, writes)
    keys = [k for k in found["keys"] if k is not None and k not in writes] + [
        k for k in writes if writes[k][0] == "run"
    ]
    meta_delete(client, keys[:-MAX_RECORDED_RUNS])
