"""``milvus-rag migrate``."""

from __future__ import annotations

from typing import Annotated

import typer

from milvus_rag.cli._common import ConfigOption, JsonOption, command, echo_json, settings_for


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
    config: ConfigOption = None,
) -> None:
    """Copy the configured collection (milvus.uri) to another Milvus, e.g. Lite -> a server.

    Texts, vectors, metadata and the embedding record are copied; rows are upserted by
    id, so rerunning resumes an interrupted copy and never duplicates. The target's
    token is MILVUS_RAG_MILVUS__TOKEN.
    """
    from milvus_rag.migrate import migrate as run_migration
    from milvus_rag.settings import MilvusSettings

    settings = settings_for(config)
    values = settings.milvus.model_dump()
    values.update(uri=to, collection=to_collection or settings.milvus.collection)
    try:
        target = MilvusSettings.model_validate(values)
    except ValueError as exc:
        from milvus_rag.errors import ConfigError

        raise ConfigError(f"--to / --to-collection: {str(exc).splitlines()[-1].strip()}") from None
    report = run_migration(settings, target, recreate=recreate)
    if as_json:
        echo_json(report.as_dict())
        return
    typer.echo(report.summary())
