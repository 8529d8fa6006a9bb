"""``milvus-rag mcp``: the documents as MCP tools, over stdio or streamable HTTP."""

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
from milvus_rag.errors import ConfigError


@command
def mcp(
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Serve streamable HTTP at http://HOST:PORT/mcp (behind server.api_key) "
            "instead of stdio.",
        ),
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(help="With --http: interface to listen on (server.host).", show_default=False),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="With --http: port to listen on (server.port).",
            min=1,
            max=65535,
            show_default=False,
        ),
    ] = None,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the documents to MCP clients (Claude Desktop, VS Code, Cursor, agents).

    Tools: search (passages with source, heading and score), ask (an answer with its
    sources; absent without the LLM's key) and list_sources. Over stdio by default: the
    client starts this command. `milvus-rag serve` serves the same tools at /mcp.
    """
    if not http and (host is not None or port is not None):
        raise ConfigError("--host and --port are for --http; stdio needs neither")
    settings = settings_for(
        config, {"server": {"host": host, "port": port}}, uri=uri, collection=collection
    )
    from milvus_rag.mcp import create_mcp_server
    from milvus_rag.retriever import MilvusRAGRetriever

    retriever = MilvusRAGRetriever.from_settings(settings)
    server = create_mcp_server(settings, retriever=retriever)
    retriever.ensure_not_empty()  # fail now, not on the first tool call
    if not http:
        server.run()  # stdio: stdout carries the protocol, messages go to stderr
        return
    import uvicorn

    from milvus_rag.cli.serve import _graceful_server_class, _is_loopback, _listen, _url_host
    from milvus_rag.mcp import mcp_http_app

    server_settings = settings.server
    listener = _listen(server_settings.host, server_settings.port)
    try:
        if server_settings.api_key is None and not _is_loopback(server_settings.host):
            typer.echo(
                f"warning: serving MCP on {printable(server_settings.host)} without an API "
                "key: set MILVUS_RAG_SERVER__API_KEY",
                err=True,
            )
        typer.echo(
            f"serving MCP for {settings.milvus.collection} on "
            f"http://{_url_host(server_settings.host)}:{server_settings.port}/mcp",
            err=True,
        )
        app = mcp_http_app(server, settings)
        uvicorn_config = uvicorn.Config(
            app,
            host=server_settings.host,
            port=server_settings.port,
            log_level="warning",
            access_log=False,
        )
        _graceful_server_class()(uvicorn_config).run(sockets=[listener])
    finally:
        listener.close()
