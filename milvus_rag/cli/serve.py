"""``milvus-rag serve``."""

from __future__ import annotations

import errno
import functools
import socket
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    UriOption,
    _quiet_libraries,
    command,
    printable,
    settings_for,
)
from milvus_rag.cli._retrieval import ModeOption, retrieval_overrides
from milvus_rag.errors import ConfigError, MilvusRAGError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from milvus_rag.auth import SessionStore
    from milvus_rag.settings import Settings


#: Seconds a worker may take to answer the supervisor's health ping (uvicorn's default, 5,
#: is short for a worker importing LangChain on a busy machine: it would be killed and restarted).
_WORKER_HEALTHCHECK_SECONDS = 60


@command
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (server.host).", show_default=False)
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (server.port).", min=1, max=65535, show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes serving requests (server.workers); above 1 needs a Milvus server URI.",
            min=1,
            max=64,
            show_default=False,
        ),
    ] = None,
    mode: ModeOption = None,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the chains over HTTP: LangServe routes and an OpenAI-compatible endpoint.

    Routes: /rag and /rag-with-sources (LangServe, with playgrounds), /retrieve,
    /v1/chat/completions and /v1/models (OpenAI-compatible, with sources), /login,
    /docs, /health and /ready, and the MCP tools at /mcp (with the mcp extra). Without the
    LLM's key it serves retrieval only. With --workers N (against a Milvus server) N
    processes serve the same port. SIGTERM lets requests in flight finish, then exits 0.
    """
    overrides = retrieval_overrides(None, mode, False)
    overrides["server"] = {"host": host, "port": port, "workers": workers}
    settings = settings_for(config, overrides, uri=uri, collection=collection)
    server = settings.server
    if server.workers > 1 and settings.milvus.is_lite:
        raise ConfigError(_lite_workers_refusal(settings))
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serving needs the server extra: pip install 'milvus-rag[server]'"
        ) from None
    listener = _listen(server.host, server.port)  # before loading anything: fail fast
    try:
        # Checked once, here, whatever the number of workers.
        app = _checked_app(settings)
        if server.api_key is None and not _is_loopback(server.host):
            typer.echo(
                f"warning: serving on {server.host} without an API key: anyone who can "
                "reach it can query the documents and spend the LLM's quota; set "
                "MILVUS_RAG_SERVER__API_KEY",
                err=True,
            )
        if app.state.empty is not None:
            typer.echo(
                f"warning: {printable(app.state.empty)}, or upload documents with a writer "
                "key (POST /documents); until then questions answer 503",
                err=True,
            )
        if app.state.llm_missing is not None:
            typer.echo(
                f"warning: {printable(app.state.llm_missing)}; the answer routes return 503",
                err=True,
            )
        processes = f" with {server.workers} workers" if server.workers > 1 else ""
        typer.echo(
            f"serving {settings.milvus.collection} on http://{_url_host(server.host)}:"
            f"{server.port}{processes} (OpenAI-compatible base URL: /v1)",
            err=True,
        )
        if server.workers == 1:
            _log_requests()
            uvicorn_config = uvicorn.Config(
                app, host=server.host, port=server.port, log_level="warning", access_log=False
            )
            _graceful_server_class()(uvicorn_config).run(sockets=[listener])
        else:
            del app  # each worker builds its own
            _run_workers(settings, listener)
    finally:
        listener.close()


def _graceful_server_class() -> type[Any]:
    import signal

    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, but SIGTERM (``docker stop``, systemd, Kubernetes) ends it with
        exit code 0 once in-flight requests are answered: uvicorn drains, then raises the
        signal again, which kills the process (exit 143, "killed" to a supervisor).
        SIGINT still ends as an interrupt."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                self._captured_signals = [s for s in self._captured_signals if s != sig]

    return GracefulServer


def _checked_app(settings: Settings, sessions: SessionStore | None = None) -> FastAPI:
    """The app for ``settings``, its collection opened and checked not to be empty
    (``sessions``: the login sessions it shares with other workers).

    With ``server.keys_file`` set (writer keys may upload documents) a missing or empty
    collection is no refusal: ``app.state.empty`` says why questions answer 503 for now.

    Raises:
        MilvusRAGError: Milvus is unreachable, the collection missing or empty, the
            server extra missing (each a typed error with a one-line message).
    """
    from milvus_rag.errors import EmptyCollectionError
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.server import create_app

    retriever = MilvusRAGRetriever.from_settings(settings)
    app = create_app(settings, retriever=retriever, sessions=sessions)
    app.state.empty = None
    try:
        retriever.ensure_not_empty()  # fail now, not on the first question
    except EmptyCollectionError as exc:
        if settings.server.keys_file is None:
            raise
        # Writer keys may upload the documents (POST /documents): start empty.
        app.state.empty = str(exc)
    return app


def _lite_workers_refusal(settings: Settings) -> str:
    """One line: why ``--workers`` above 1 cannot serve a Milvus Lite file, and the way out."""
    from milvus_rag.store import lite_serve_command

    return printable(
        f"--workers {settings.server.workers} needs a Milvus server: the Milvus Lite file "
        f"{settings.milvus.uri} can be opened by one process only; serve it with "
        f"{lite_serve_command(settings.milvus.uri)} and pass "
        "--uri http://127.0.0.1:19530 (or use a Milvus server), or serve with --workers 1"
    )


def _run_workers(settings: Settings, listener: socket.socket) -> None:
    """Serve on ``listener`` from ``settings.server.workers`` processes until SIGINT/SIGTERM.

    uvicorn's supervisor starts the workers (spawned: fresh interpreters sharing nothing
    but the socket and Milvus), replaces a worker that dies, and on SIGINT or SIGTERM
    stops them all gracefully before it returns. Each worker builds its app from the
    settings loaded and checked here (:func:`_worker_app`), with one login session store
    for all of them (a session opened on one worker is valid on every one, a logout on
    one ends it on all); its folder is removed when the workers have stopped.

    Raises:
        typer.Exit: a worker could not start (it printed why).
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from milvus_rag.auth import SessionStore

    server = settings.server
    sessions = SessionStore.shared()
    uvicorn_config = uvicorn.Config(
        # Pickled to each worker through its start-up pipe (the sessions' secret too).
        functools.partial(_worker_app, settings, sessions),
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        log_level="warning",
        access_log=False,
        timeout_worker_healthcheck=_WORKER_HEALTHCHECK_SECONDS,
    )
    supervisor = Multiprocess(uvicorn_config, sockets=[listener])
    try:
        supervisor.run()
    finally:
        sessions.close()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise typer.Exit(1)


def _worker_app(settings: Settings, sessions: SessionStore) -> FastAPI:
    """The app one worker serves (runs in the worker, as uvicorn's app factory).

    A worker whose app cannot be built prints one line and exits with uvicorn's
    start-up failure code, which stops the supervisor rather than restarting it.
    """
    from uvicorn.config import STARTUP_FAILURE

    _quiet_libraries(milvus=True)
    _log_requests(with_pid=True)
    try:
        return _checked_app(settings, sessions)
    except MilvusRAGError as exc:
        from milvus_rag.redaction import Redactor

        # A fresh process: no command runs here to mask the settings' secrets.
        typer.echo(f"error: {printable(Redactor.from_settings(settings).redact(exc))}", err=True)
        sys.exit(STARTUP_FAILURE)


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
    except (TypeError, ValueError) as exc:  # not encodable as a host name (UnicodeError too)
        sock.close()
        raise ConfigError(
            f"cannot listen on {printable(host)}:{port}: not a host name or address "
            f"({exc}); choose another --host (server.host)"
        ) from None
    except OSError as exc:
        sock.close()
        where = f"{printable(host)}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} is already in use on {printable(host)}: stop the process listening on "
                f"{where}, or choose another port with --port (server.port)"
            ) from None
        raise ConfigError(
            f"cannot listen on {where}: {exc.strerror or exc}; choose another --host (server.host)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _log_requests(*, with_pid: bool = False) -> None:
    """Access log lines (``milvus_rag.server.access``) on stderr, with a timestamp.

    ``with_pid``: each line also names the worker process that served the request.
    """
    import logging

    from milvus_rag.cli._common import _EchoHandler
    from milvus_rag.server.logs import access_log

    if not access_log.handlers:
        handler = _EchoHandler()
        pid = " [%(process)d]" if with_pid else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s{pid} %(message)s"))
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
