"""``milvus-rag sources``: the documents in the collection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    JsonOption,
    UriOption,
    command,
    echo_json,
    printable,
    settings_for,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.store import StoredSource


@command
def sources(
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """List the documents in the collection: chunks, last ingest, splitter, model, mode.

    Loads no embedding model.
    """
    from milvus_rag.store import connect_existing, list_sources

    settings = settings_for(config, uri=uri, collection=collection)
    name = settings.milvus.collection
    client = connect_existing(settings.milvus)
    try:
        info = collection_summary(client, name)
        docs = [document_record(entry, info) for entry in list_sources(client, name)]
        # A chunk's other views (its question heading) are rows of their own.
        info["views"] = sum(d["views"] for d in docs)
    finally:
        client.close()
    if as_json:
        echo_json({"collection": name, **info["collection"], "documents": docs})
        return
    about = info["collection"]
    from milvus_rag.store import chunk_count

    chunks = sum(d["chunks"] for d in docs)
    typer.echo(
        f"collection {name}: {len(docs)} documents, {chunk_count(chunks, info['views'])}; "
        f"model {printable(about['model'])}, mode {about['mode']}"
    )
    if not docs:
        return
    header = ("source", "chunks", "last ingest", "splitter")
    rows = [
        (printable(d["source"]), str(d["chunks"]), _when(d["ingested_at"]), d["splitter"] or "-")
        for d in docs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].ljust(widths[2]),
            row[3],
        ]
        typer.echo("  ".join(cells).rstrip())


def collection_summary(client: MilvusClient, name: str) -> dict[str, Any]:
    """The collection's model and mode, and what :func:`record_ingest` kept."""
    from milvus_rag.store import collection_identity, has_sparse_field, ingest_records

    identity = collection_identity(client, name) or {}
    return {
        "collection": {
            "model": identity.get("model", "unknown (not created by milvus-rag)"),
            "dim": identity.get("dim"),
            "metric": identity.get("metric"),
            "mode": "hybrid" if has_sparse_field(client, name) else "dense",
        },
        "records": ingest_records(client, name),
    }


def document_record(entry: StoredSource, info: dict[str, Any]) -> dict[str, Any]:
    """One document as ``sources --json`` shows it."""
    records = info["records"]
    splitters = sorted({records["chunkers"].get(c, "unknown") for c in entry.chunkers})
    return {
        "source": entry.source,
        "origin": entry.origin,
        "scope": entry.scope,
        "chunks": entry.chunks,
        "views": len(entry.ids) - entry.chunks,
        "ingested_at": last_ingest(entry, records["runs"]),
        "splitter": ", ".join(splitters) or None,
        "model": info["collection"]["model"],
        "mode": info["collection"]["mode"],
    }


def last_ingest(entry: StoredSource, runs: list[dict[str, Any]]) -> str | None:
    """When an ingest of the document's origin whose glob covers it last ran."""
    times = [
        str(run.get("at"))
        for run in runs
        if run.get("origin") == entry.origin and _covers(run.get("glob"), entry.source)
    ]
    return max(times, default=None)


def _covers(glob: str | None, path: str) -> bool:
    if not glob:
        return True
    from milvus_rag.errors import SourceError
    from milvus_rag.loaders.sources import glob_match

    try:
        return bool(glob_match(path, glob))
    except SourceError:
        return False


def _when(iso: str | None) -> str:
    """``2025-01-31T12:00:00+00:00`` as ``2025-01-31 12:00:00 UTC`` (``-`` when unknown)."""
    if not iso:
        return "-"
    return iso.replace("T", " ").removesuffix("+00:00") + (" UTC" if iso.endswith("+00:00") else "")
