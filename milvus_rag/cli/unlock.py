"""``milvus-rag unlock``: release the ingest lock of a collection on a Milvus server."""

from __future__ import annotations

from typing import Annotated

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


@command
def unlock(
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Release a lock whose holder still looks alive (its lease is current)."
        ),
    ] = False,
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Release the ingest lock of the collection (left by a killed ingest).

    An abandoned lock (its process gone, its lease expired, or no owner) is also taken
    over by the next ingest, with a warning. A lock whose holder looks alive is kept
    unless --force is given: release it only when no ingest is running. Milvus Lite
    files have no lock (one process opens a file at a time).
    """
    from milvus_rag.store import connect, ingest_lock_status, release_ingest_lock

    settings = settings_for(config, uri=uri, collection=collection)
    name = settings.milvus.collection
    if settings.milvus.is_lite:
        message = f"no ingest lock: a Milvus Lite database ({settings.milvus.uri}) has none"
        _done(as_json, message, None)
        return
    client = connect(settings.milvus)
    try:
        status = ingest_lock_status(client, name)
        if status is None:
            _done(as_json, f"no ingest lock on collection {name}", None)
            return
        if status.abandoned is None and not force:
            typer.echo(
                f"error: {printable(status.describe())}, whose lease is current: an ingest "
                "may be running; pass --force to release it anyway",
                err=True,
            )
            raise typer.Exit(1)
        release_ingest_lock(client, name)
    finally:
        client.close()
    _done(as_json, f"released the {status.describe()}", status)


def _done(as_json: bool, message: str, status: object) -> None:
    if as_json:
        from dataclasses import asdict, is_dataclass

        released = asdict(status) if is_dataclass(status) and not isinstance(status, type) else None
        echo_json({"released": released, "message": message})
    else:
        typer.echo(printable(message))
