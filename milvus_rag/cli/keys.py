"""``milvus-rag keys add|list|revoke``: the server's named keys (``server.keys_file``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from milvus_rag.cli._common import ConfigOption, JsonOption, echo_json, light_command

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Named API keys with a role and scopes, kept (as digests) in server.keys_file.",
    no_args_is_help=True,
)

KeysFileOption = Annotated[
    Path | None,
    typer.Option("--keys-file", help="The keys file (server.keys_file).", show_default=False),
]


def _keys_file(config: Path | None, keys_file: Path | None) -> Path:
    from milvus_rag.cli._common import settings_for
    from milvus_rag.errors import ConfigError

    path = keys_file or settings_for(config).server.keys_file
    if path is None:
        raise ConfigError(
            "no keys file: set server.keys_file (MILVUS_RAG_SERVER__KEYS_FILE) or pass --keys-file"
        )
    return path


@keys_app.command("add")
@light_command
def add_key(
    name: Annotated[str, typer.Argument(help="The key's name (logs and metrics show it).")],
    role: Annotated[
        str, typer.Option("--role", help="reader, writer or admin.", show_default=True)
    ] = "reader",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A document scope the key reads (and, for writers, writes); repeat for more. "
            "Required except for admin keys (every scope).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        int | None,
        typer.Option(
            "--rate",
            help="Requests a minute for this key (default: server.key_rate_per_minute).",
            min=1,
            show_default=False,
        ),
    ] = None,
    keys_file: KeysFileOption = None,
    config: ConfigOption = None,
) -> None:
    """Make a key; it is printed once, alone on the last line (only its digest is kept)."""
    from milvus_rag.keys import KeysFile

    path = _keys_file(config, keys_file)
    key = KeysFile(path).add(name, role, scope or [], rate)
    scopes = ", ".join(scope or []) or "every scope"
    typer.echo(f"key {name} added to {path}: role {role}, {scopes}. It is shown only now:")
    typer.echo(key)


@keys_app.command("list")
@light_command
def list_keys(
    keys_file: KeysFileOption = None, config: ConfigOption = None, json: JsonOption = False
) -> None:
    """The keys in the keys file: name, role, scopes (never a key or its digest)."""
    from milvus_rag.keys import KeysFile

    path = _keys_file(config, keys_file)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "role": p.role,
            "scopes": list(p.scopes) if p.scopes is not None else None,
            "rate_per_minute": p.rate_per_minute,
        }
        for p in KeysFile(path).load()
    ]
    if json:
        echo_json({"keys_file": str(path), "keys": rows})
        return
    if not rows:
        typer.echo(f"no keys in {path}")
    for row in rows:
        scopes = ", ".join(row["scopes"]) if row["scopes"] is not None else "every scope"
        typer.echo(f"{row['name']}  {row['role']}  {scopes}")


@keys_app.command("revoke")
@light_command
def revoke_key(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    keys_file: KeysFileOption = None,
    config: ConfigOption = None,
) -> None:
    """Remove a key: a running server refuses it (401) on its next request."""
    from milvus_rag.errors import ConfigError
    from milvus_rag.keys import KeysFile

    path = _keys_file(config, keys_file)
    if not KeysFile(path).revoke(name):
        raise ConfigError(f"no key named {name} in {path}")
    typer.echo(f"key {name} revoked")
