"""``milvus-rag serve``."""

from __future__ import annotations

from typing import Annotated

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    UriOption,
    command,
    settings_for,
)
from milvus_rag.cli._retrieval import ModeOption, retrieval_overrides
from milvus_rag.errors import ConfigError


@command
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (server.host).", show_default=False)
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (server.port).", min=1, max=65535, show_default=False),
    ] = None,
    mode: ModeOption = None,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the chains over HTTP: LangServe routes and an OpenAI-compatible endpoint.

    Routes: /rag and /rag-with-sources (LangServe), /v1/chat/completions and
    /v1/models (OpenAI-compatible, with sources), /health.
    """
    overrides = retrieval_overrides(None, mode, False)
    overrides["server"] = {"host": host, "port": port}
    settings = settings_for(config, overrides, uri=uri, collection=collection)
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.server import create_app

    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serving needs the server extra: pip install 'milvus-rag[server]'"
        ) from None
    retriever = MilvusRAGRetriever.from_settings(settings)
    app = create_app(settings, retriever=retriever)
    retriever.ensure_not_empty()  # fail now, not on the first question

    if settings.server.api_key is None and not _is_loopback(settings.server.host):
        typer.echo(
            f"warning: serving on {settings.server.host} without an API key: anyone who can "
            "reach it can query the documents and spend the LLM's quota; set "
            "MILVUS_RAG_SERVER__API_KEY",
            err=True,
        )
    typer.echo(
        f"serving {settings.milvus.collection} on http://{settings.server.host}:"
        f"{settings.server.port} (OpenAI-compatible base URL: /v1)",
        err=True,
    )
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level="warning")


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
