"""The ``milvus-rag`` command line: one module per command.

Settings are loaded once per command from ``--config``, ``MILVUS_RAG_*``
environment variables and the flags; typed errors become one line on stderr
and a non-zero exit code. Importing this package builds the typer app only:
commands import LangChain, pymilvus and the model runtime inside their bodies,
so ``--help``, ``--version`` and ``config`` start fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from milvus_rag.cli._common import printable
from milvus_rag.cli.ask import ask
from milvus_rag.cli.chat import chat
from milvus_rag.cli.config import config_app
from milvus_rag.cli.create_user import create_user
from milvus_rag.cli.delete import delete
from milvus_rag.cli.doctor import doctor
from milvus_rag.cli.eval import evaluate
from milvus_rag.cli.ingest import ingest
from milvus_rag.cli.migrate import migrate
from milvus_rag.cli.search import search
from milvus_rag.cli.serve import serve
from milvus_rag.cli.sources import sources
from milvus_rag.cli.unlock import unlock

__all__ = ["app", "main"]


# click's UsageError, whichever click typer uses (its own copy since typer 0.25).
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _one_line(exc: Exception) -> Exception:
    """A usage error printed as one ``error:`` line: the exit (code 2) to raise instead.

    Other exceptions (and click's "no arguments: show the help") come back unchanged.
    """
    if not isinstance(exc, _UsageError) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc
    ctx: Any = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    message = exc.format_message()  # type: ignore[attr-defined]
    typer.echo(f"error: {printable(message)}{where}", err=True)
    return typer.Exit(getattr(exc, "exit_code", 2))


class _Group(TyperGroup):
    """The root group: usage errors (bad flag, bad choice) are one line, like every error."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except Exception as exc:
            replacement = _one_line(exc)
            if replacement is exc:
                raise
            raise replacement from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            replacement = _one_line(exc)
            if replacement is exc:
                raise
            raise replacement from None


app = typer.Typer(
    name="milvus-rag",
    cls=_Group,
    help="Answer questions over your documents with Milvus and an OpenAI-compatible LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from milvus_rag import __version__

        typer.echo(f"milvus-rag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Answer questions over your documents with Milvus and an OpenAI-compatible LLM."""


app.command("ingest")(ingest)
app.command("search")(search)
app.command("ask")(ask)
app.command("chat")(chat)
app.command("eval")(evaluate)
app.command("sources")(sources)
app.command("delete")(delete)
app.command("doctor")(doctor)
app.add_typer(config_app, name="config")
app.command("serve")(serve)
app.command("migrate")(migrate)
app.command("create-user")(create_user)
app.command("unlock")(unlock)


def main() -> None:
    """Console entry point."""
    import os

    # gRPC's C core (Milvus Lite's transport) logs keepalive chatter to stderr.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    app()
