"""``milvus-rag delete``: remove documents from the collection."""

from __future__ import annotations

from typing import Annotated

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    UriOption,
    command,
    printable,
    settings_for,
)


@command
def delete(
    patterns: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE_GLOB...",
            help="Sources to delete: a path, a folder prefix (en/faq/) or a glob "
            "(en/faq/*.md; * also crosses /), as search --source takes.",
            show_default=False,
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Delete the chunks of the matching documents (and so their ingest state).

    Lists what matches and asks first (--yes skips the question). The next ingest of
    a deleted file writes it again. Loads no embedding model.
    """
    from milvus_rag.filters import any_of, source_glob
    from milvus_rag.store import connect_existing, delete_sources, list_sources

    settings = settings_for(config, uri=uri, collection=collection)
    name = settings.milvus.collection
    client = connect_existing(settings.milvus)
    try:
        matched = list_sources(client, name, any_of(*(source_glob(p) for p in patterns)))
        if not matched:
            wanted = ", ".join(printable(p) for p in patterns)
            typer.echo(f"error: no document in collection {name} matches {wanted}", err=True)
            raise typer.Exit(1)
        chunks = sum(entry.chunks for entry in matched)
        for entry in matched:
            typer.echo(f"  {printable(entry.source)}  ({entry.chunks} chunks)")
        question = f"delete these {len(matched)} documents ({chunks} chunks) from {name}?"
        if not yes and not typer.confirm(question, default=False):
            typer.echo("nothing deleted", err=True)
            raise typer.Exit(1)
        delete_sources(client, name, matched)
    finally:
        client.close()
    typer.echo(f"deleted {len(matched)} documents ({chunks} chunks) from {name}")
