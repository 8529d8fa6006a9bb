"""``milvus-rag ask``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from milvus_rag.cli._common import (
    ConfigOption,
    JsonOption,
    command,
    config_file_of,
    echo_json,
    printable,
    settings_for,
)
from milvus_rag.cli._retrieval import (
    FilterOption,
    KOption,
    MMROption,
    ModeOption,
    SourceOption,
    filter_expression,
    retrieval_overrides,
)
from milvus_rag.errors import MilvusRAGError


@command
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    k: KOption = None,
    mode: ModeOption = None,
    source: SourceOption = None,
    filter_: FilterOption = None,
    mmr: MMROption = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the answer once it is complete.")
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Answer QUESTION from the ingested documents, then list the sources used."""
    from milvus_rag.chains import build_rag_chain_with_sources, source_of
    from milvus_rag.llm import chat_model_from_settings
    from milvus_rag.retriever import MilvusRAGRetriever

    settings = settings_for(config, retrieval_overrides(k, mode, mmr))
    llm = chat_model_from_settings(settings)  # raises on a missing key before any I/O
    retriever = MilvusRAGRetriever.from_settings(settings, expr=filter_expression(source, filter_))
    retriever.ensure_not_empty()
    chain = build_rag_chain_with_sources(retriever=retriever, llm=llm)
    context: list[Any] = []
    if as_json or no_stream:
        result = chain.invoke(question)
        answer, context = result["answer"], result["context"]
        if as_json:
            sources = [source_of(d) for d in context]
            echo_json(
                {"answer": answer, "sources": sources, "config_file": config_file_of(settings)}
            )
            return
        typer.echo(answer)
    else:
        answered = False
        try:
            for part in chain.stream(question):
                if "context" in part:
                    context = part["context"]
                if "answer" in part:
                    typer.echo(part["answer"], nl=False)
                    answered = True
        except MilvusRAGError:
            if answered:  # end the partial answer's line: the error gets a line of its own
                typer.echo()
            raise
        typer.echo()
    _print_sources(context)


def _print_sources(context: list[Any]) -> None:
    if not context:
        return
    typer.echo("\nSources:")
    for rank, doc in enumerate(context, 1):
        heading = doc.metadata.get("heading")
        where = f"{doc.metadata.get('source')}" + (f" ({heading})" if heading else "")
        typer.echo(f"  [{rank}] {printable(where)}  score {doc.metadata.get('score', 0.0):.3f}")
