"""``milvus-rag config`` (the resolved settings) and ``milvus-rag config init``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from milvus_rag.cli._common import (
    ConfigOption,
    config_file_of,
    echo_json,
    light_command,
    settings_for,
)

__all__ = ["config_app"]

config_app = typer.Typer(
    help="Print the resolved settings; `config init` writes a commented config.yaml.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@config_app.callback()
@light_command
def show_config(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Print the resolved settings (secrets shown only as set or unset).

    ``config_file`` is the file read (absolute path), or null when none was.
    ``secrets`` says which variable holds each secret and which host it is sent to
    (``sent_to``), never its value. `milvus-rag config init [PATH]` writes a commented
    config.yaml to edit.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_for(config)
    echo_json(
        {
            "config_file": config_file_of(settings),
            "secrets": settings.secret_routes(),
            **settings.redacted(),
        }
    )


@config_app.command("init")
@light_command
def init_config(
    path: Annotated[Path, typer.Argument(help="Where to write it.", show_default=True)] = Path(
        "config.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented config.yaml holding every setting at its default value."""
    from milvus_rag.errors import ConfigError
    from milvus_rag.settings import default_config_text

    # os.path's checks never raise (a name too long); Path's may.
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a folder; give a file path, e.g. {path / 'config.yaml'}")
    try:
        path.write_text(default_config_text(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    typer.echo(f"wrote {path}: every setting at its default, with comments; edit what you need")
