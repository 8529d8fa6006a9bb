"""``milvus-rag create-user``: the Milvus user milvus-rag connects as."""

from __future__ import annotations

from typing import Annotated

import typer

from milvus_rag.cli._common import ConfigOption, UriOption, command, settings_for


@command
def create_user(
    admin_token: Annotated[
        str,
        typer.Option(
            "--admin-token",
            envvar="MILVUS_ADMIN_TOKEN",
            prompt="Milvus administrator's token (root:PASSWORD)",
            hide_input=True,
            show_default=False,
            show_envvar=True,
            help="A token of a Milvus user allowed to manage users and roles, e.g. "
            "root:PASSWORD. Give it in MILVUS_ADMIN_TOKEN or at the prompt: a flag's value "
            "shows in the process list.",
        ),
    ],
    uri: UriOption = None,
    config: ConfigOption = None,
) -> None:
    """Create the Milvus user milvus-rag connects as, with only the privileges it needs.

    The user and its password are MILVUS_RAG_MILVUS__TOKEN's (USER:PASSWORD), the one
    every other command then connects with; the administrator's token is used for this
    command only. The user gets a role of its own name, granted what ingest, search,
    serve, delete and migrate do on the database's collections, and nothing else. Safe
    to run again: an existing user or grant is kept.
    """
    from pydantic import SecretStr

    from milvus_rag.access import create_user as create

    settings = settings_for(config, uri=uri)
    report = create(settings.milvus, SecretStr(admin_token))
    done = "created" if report.created else "already existed"
    typer.echo(
        f"user {report.user} {done}; role {report.role} holds {report.privileges} privileges on "
        f"the collections of {settings.milvus.uri}; milvus-rag connects as {report.user}"
    )
