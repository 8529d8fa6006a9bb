"""``milvus-rag migrate``."""

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
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Target Milvus URI (http://host:19530, or another Milvus Lite file).",
            show_default=False,
        ),
    ],
    to_collection: Annotated[
        str | None,
        typer.Option(help="Target collection (default: the same name).", show_default=False),
    ] = None,
    recreate: Annotated[
        bool, typer.Option("--recreate", help="Drop the target collection first.")
    ] = False,
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Copy the collection (milvus.uri, or --uri) to another Milvus, e.g. Lite -> a server.

    Texts, vectors, metadata and the embedding record are copied; rows are upserted by
    id, so rerunning resumes an interrupted copy and never duplicates. The target's
    token is MILVUS_RAG_MILVUS__TOKEN.
    """
    from milvus_rag.migrate import migrate as run_migration

    settings = settings_for(config, uri=uri, collection=collection)
    # The target goes through the same validation as any setting (one line naming the key).
    target = settings_for(
        config,
        uri=to,
        collection=to_collection or settings.milvus.collection,
        warn_unknown_env=False,  # warned once already
    ).milvus
    report = run_migration(settings, target, recreate=recreate)
    if as_json:
        echo_json(report.as_dict())
        return
    typer.echo(printable(report.summary()))
