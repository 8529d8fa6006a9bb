"""``milvus-rag serve``."""

from __future__ import annotations

import errno
import socket
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

    Routes: /rag and /rag-with-sources (LangServe, with playgrounds), /retrieve,
    /v1/chat/completions and /v1/models (OpenAI-compatible, with sources), /login,
    /docs, /health and /ready. Without the LLM's key it serves retrieval only.
    """
    overrides = retrieval_overrides(None, mode, False)
    overrides["server"] = {"host": host, "port": port}
    settings = settings_for(config, overrides, uri=uri, collection=collection)
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serving needs the server extra: pip install 'milvus-rag[server]'"
        ) from None
    server = settings.server
    listener = _listen(server.host, server.port)  # before loading anything: fail fast
    try:
        from milvus_rag.retriever import MilvusRAGRetriever
        from milvus_rag.server import create_app

        retriever = MilvusRAGRetriever.from_settings(settings)
        app = create_app(settings, retriever=retriever)
        retriever.ensure_not_empty()  # fail now, not on the first question

        if server.api_key is None and not _is_loopback(server.host):
            typer.echo(
                f"warning: serving on {server.host} without an API key: anyone who can "
                "reach it can query the documents and spend the LLM's quota; set "
                "MILVUS_RAG_SERVER__API_KEY",
                err=True,
            )
        if app.state.llm_missing is not None:
            typer.echo(f"warning: {app.state.llm_missing}; the answer routes return 503", err=True)
        typer.echo(
            f"serving {settings.milvus.collection} on http://{_url_host(server.host)}:"
            f"{server.port} (OpenAI-compatible base URL: /v1)",
            err=True,
        )
        _log_requests()
        uvicorn_config = uvicorn.Config(
            app, host=server.host, port=server.port, log_level="warning", access_log=False
        )
        uvicorn.Server(uvicorn_config).run(sockets=[listener])
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on.

    Raises:
        ConfigError: the port is taken, or ``host`` is not an address of this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} is already in use on {host}: stop the process listening on "
                f"{where}, or choose another port with --port (server.port)"
            ) from None
        raise ConfigError(
            f"cannot listen on {where}: {exc.strerror or exc}; choose another --host (server.host)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _log_requests() -> None:
    """Access log lines (``milvus_rag.server.access``) on stderr, with a timestamp."""
    import logging

    from milvus_rag.cli._common import _EchoHandler
    from milvus_rag.server import access_log

    if not access_log.handlers:
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False  # not through the CLI's "warning:" handler


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
