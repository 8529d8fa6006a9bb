"""``milvus-rag chat``: an interactive session in the terminal that keeps the conversation.

Each question after the first is rewritten with the conversation into a standalone
question before retrieval (one extra LLM call); the answer streams, then its sources
are listed. ``exit``, ``quit``, Ctrl-D or Ctrl-C at the prompt end the session; an
error is one line and the session goes on.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    UriOption,
    command,
    printable,
    settings_for,
)
from milvus_rag.cli._retrieval import (
    FilterOption,
    KOption,
    ModeOption,
    SourceOption,
    check_filter_keys,
    filter_expression,
    retrieval_overrides,
)
from milvus_rag.errors import MilvusRAGError

_EXIT = frozenset({"exit", "quit"})


@command
def chat(
    k: KOption = None,
    mode: ModeOption = None,
    source: SourceOption = None,
    filter_: FilterOption = None,
    citations: Annotated[
        bool | None,
        typer.Option(
            "--citations/--no-citations",
            help="Cite passages as [1], [2] and end answers with the source list "
            "(default: answer.citations).",
            show_default=False,
        ),
    ] = None,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Chat with your documents: follow-up questions keep the conversation's context."""
    from milvus_rag.chains import build_rag_chain_with_sources
    from milvus_rag.llm import chat_model_from_settings
    from milvus_rag.retriever import MilvusRAGRetriever

    overrides = retrieval_overrides(k, mode)
    overrides["answer"] = {"citations": citations}
    settings = settings_for(config, overrides, uri=uri, collection=collection)
    llm = chat_model_from_settings(settings)  # raises on a missing key before any I/O
    retriever = MilvusRAGRetriever.from_settings(settings, expr=filter_expression(source, filter_))
    retriever.ensure_not_empty()
    check_filter_keys(retriever, filter_)
    chain = build_rag_chain_with_sources(settings, retriever=retriever, llm=llm)
    typer.echo(
        f"Chatting with {printable(settings.llm.model)} over {settings.milvus.collection}. "
        "Type 'exit' or 'quit' to end."
    )
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
    history: list[tuple[str, str]] = []
    while True:
        question = _read("> ")
        if question is None or question.strip().lower() in _EXIT:
            break
        if not question.strip():
            continue
        answer = _turn(chain, question.strip(), history, settings.answer.citations)
        if answer is not None:
            history += [("user", question.strip()), ("assistant", answer)]


def _read(prompt: str) -> str | None:
    """One line from the user; None at end of input (Ctrl-D) or on Ctrl-C, "" when the line
    could not be decoded.

    A terminal gets ``input()`` (line editing); piped input is read as bytes, so a line
    that is not UTF-8 is consumed whole, reported, and the session goes on.
    """
    try:
        if sys.stdin.isatty():
            return input(prompt)
        typer.echo(prompt, nl=False)
        raw = sys.stdin.buffer.readline() if hasattr(sys.stdin, "buffer") else None
        if raw is None:
            return input()
        if not raw:
            raise EOFError
        return raw.decode("utf-8").rstrip("\r\n")
    except EOFError:
        typer.echo()
        return None
    except KeyboardInterrupt:
        typer.echo()
        return None
    except UnicodeDecodeError:
        typer.echo("error: the line is not UTF-8 text; type it again", err=True)
        return ""


def _turn(chain: Any, question: str, history: list[tuple[str, str]], cited: bool) -> str | None:
    """Stream one answer, then its sources; the answer text, or None when it failed."""
    from milvus_rag.chains import source_list
    from milvus_rag.cli.ask import _print_sources

    context: list[Any] = []
    pieces: list[str] = []
    try:
        for part in chain.stream({"question": question, "chat_history": history}):
            if "context" in part:
                context = part["context"]
            if part.get("answer"):
                pieces.append(part["answer"])
                typer.echo(part["answer"], nl=False)
    except MilvusRAGError as exc:
        if pieces:  # end the partial answer's line: the error gets a line of its own
            typer.echo()
        typer.echo(f"error: {printable(exc)}", err=True)
        return None
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        return None
    typer.echo()
    answer = "".join(pieces)
    if cited:  # the answer already ends with its numbered source list
        return answer.removesuffix("\n\n" + source_list(context))
    _print_sources(context)
    typer.echo()
    return answer
