"""``milvus-rag ingest``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from milvus_rag.choices import IngestEngine, RetrievalMode, SplitterName
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
    from milvus_rag.sync import IngestReport

#: The skip reason summarised in one line per run (it repeats on every run of a source).
UNSUPPORTED = "unsupported file type"
#: How many of the summarised files are named.
SHOWN = 5


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
        SplitterName | None,
        typer.Option(
            "--splitter",
            help="markdown: heading-aware (default: ingest.splitter); "
            "tutorial: split on '# ' as the tutorial does.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        RetrievalMode | None,
        typer.Option(
            "--mode",
            help="hybrid adds a BM25 field for hybrid search (default: retrieval.mode).",
            show_default=False,
        ),
    ] = None,
    recreate: Annotated[
        bool, typer.Option("--recreate", help="Drop the collection first.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete chunks of files no longer in the source.")
    ] = False,
    engine: Annotated[
        IngestEngine | None,
        typer.Option(
            "--engine",
            help="local: parse and embed in this process; ray: as Ray Data stages on a Ray "
            "cluster, needs the ray extra (default: ingest.engine).",
            show_default=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to run on, e.g. ray://head:10001 or auto (default: "
            "ingest.ray_address; unset = a local Ray with this machine's cores).",
            show_default=False,
        ),
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope",
            help="The document scope the chunks go into; keys read only their scopes "
            "(default: ingest.scope).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Load, split, embed and store a source; reruns only write what changed."""
    from milvus_rag.cli.progress import IngestProgress
    from milvus_rag.sync import ingest as run_ingest

    settings = settings_for(
        config,
        {
            "ingest": {
                "splitter": splitter,
                "engine": engine,
                "ray_address": ray_address,
                "scope": scope,
            },
            "retrieval": {"mode": mode},
        },
        uri=uri,
        collection=collection,
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
    for line in skip_lines(report):
        typer.echo(line, err=True)
    for warning in report.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    if not report.changed:
        typer.echo("nothing changed: the collection is up to date")
    typer.echo(report.summary())


def skip_lines(report: IngestReport) -> list[str]:
    """The skipped files as printed: unsupported types in one line, other reasons one each."""
    unsupported = [path for path, reason in report.skipped_files if reason == UNSUPPORTED]
    lines = [
        f"skipped {printable(path)}: {printable(reason)}"
        for path, reason in report.skipped_files
        if reason != UNSUPPORTED
    ]
    if len(unsupported) == 1:
        lines.append(f"skipped {printable(unsupported[0])}: {UNSUPPORTED}")
    elif unsupported:
        names = ", ".join(printable(path) for path in unsupported[:SHOWN])
        more = f", ... {len(unsupported) - SHOWN} more" if len(unsupported) > SHOWN else ""
        lines.append(f"skipped {len(unsupported)} files: {UNSUPPORTED} ({names}{more})")
    return lines
