"""``milvus-rag ingest``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from milvus_rag.cli._common import (
    ConfigOption,
    JsonOption,
    command,
    echo_json,
    printable,
    settings_for,
)


@command
def ingest(
    source: Annotated[
        str, typer.Argument(help="Folder, file, .zip archive, or http(s) URL of one.")
    ],
    glob: Annotated[
        str | None,
        typer.Option("--glob", "-g", help="Files inside the source, e.g. 'en/faq/*.md'."),
    ] = None,
    splitter: Annotated[
        str | None,
        typer.Option("--splitter", help="markdown (default) or tutorial (split on '# ')."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="dense or hybrid (adds a BM25 field).")
    ] = None,
    recreate: Annotated[
        bool, typer.Option("--recreate", help="Drop the collection first.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete chunks of files no longer in the source.")
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Load, split, embed and store a source; reruns only write what changed."""
    from milvus_rag.cli.progress import IngestProgress
    from milvus_rag.errors import ConfigError
    from milvus_rag.sync import ingest as run_ingest

    if splitter not in (None, "markdown", "tutorial"):
        raise ConfigError(f"--splitter must be markdown or tutorial, got {splitter!r}")
    settings = settings_for(
        config,
        {"ingest": {"splitter": splitter}, "retrieval": {"mode": _mode(mode)}},
    )
    with IngestProgress(enabled=not as_json) as progress:
        report = run_ingest(
            source,
            settings,
            glob=glob,
            recreate=recreate,
            prune=prune,
            progress=progress.callbacks,
        )
    if as_json:
        echo_json(report.as_dict())
        return
    for path, reason in report.skipped_files:
        typer.echo(f"skipped {printable(path)}: {printable(reason)}", err=True)
    for warning in report.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    if not report.changed:
        typer.echo("nothing changed: the collection is up to date")
    typer.echo(report.summary())


def _mode(value: str | None) -> Literal["dense", "hybrid"] | None:
    from milvus_rag.errors import ConfigError

    if value is None:
        return None
    if value not in ("dense", "hybrid"):
        raise ConfigError(f"--mode must be dense or hybrid, got {value!r}")
    return value  # type: ignore[return-value]
