"""``milvus-rag model download``: an embedding model into a folder for embedding.model_dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from milvus_rag.cli._common import JsonOption, echo_json, light_command, printable

__all__ = ["model_app"]

model_app = typer.Typer(
    help="Fetch the embedding model into a folder (for embedding.model_dir).",
    no_args_is_help=True,
)


@model_app.command("download")
@light_command
def download(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder to create, e.g. ./models/paraphrase-albert-onnx."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A Hugging Face repository holding model.onnx or onnx/model.onnx "
            "(e.g. sentence-transformers/all-MiniLM-L6-v2); default: the package's "
            "default model, GPTCache/paraphrase-albert-onnx.",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", help="Branch, tag or commit (default: main).", show_default=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a model already there.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Download an ONNX embedding model into FOLDER, ready for embedding.model_dir.

    Uses the Hugging Face hub client: HF_ENDPOINT (a mirror), HF_TOKEN and the hub cache
    (HF_HOME) apply. Air-gapped machines: run it where there is a connection and copy
    FOLDER over (keep its name: a collection records it).
    """
    from milvus_rag.model_download import download_model

    found = download_model(folder, model, revision=revision, force=force)
    if as_json:
        echo_json(
            {"path": str(found.path), "model": found.model, "files": found.files, "dim": found.dim}
        )
        return
    typer.echo(
        f"model {printable(found.model)} ({found.dim} dimensions) in {printable(found.path)}; "
        f"use it with MILVUS_RAG_EMBEDDING__MODEL_DIR={printable(found.path.resolve())} "
        "(embedding.model_dir)"
    )
