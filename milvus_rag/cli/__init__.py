"""The ``milvus-rag`` command line: one module per command.

Settings are loaded once per command from ``--config``, ``MILVUS_RAG_*``
environment variables and the flags; typed errors become one line on stderr
and a non-zero exit code.
"""

from __future__ import annotations

import typer

from milvus_rag.cli.ask import ask
from milvus_rag.cli.chat import chat
from milvus_rag.cli.config import show_config
from milvus_rag.cli.eval import evaluate
from milvus_rag.cli.ingest import ingest
from milvus_rag.cli.migrate import migrate
from milvus_rag.cli.search import search
from milvus_rag.cli.serve import serve

__all__ = ["app", "main"]

app = typer.Typer(
    name="milvus-rag",
    help="Answer questions over your documents with Milvus and an OpenAI-compatible LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest")(ingest)
app.command("search")(search)
app.command("ask")(ask)
app.command("chat")(chat)
app.command("eval")(evaluate)
app.command("config")(show_config)
app.command("serve")(serve)
app.command("migrate")(migrate)


def main() -> None:
    """Console entry point."""
    import os

    # gRPC's C core (Milvus Lite's transport) logs keepalive chatter to stderr.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    app()
