"""``milvus-rag ask``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    JsonOption,
    UriOption,
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
    ModelPreload,
    ModeOption,
    SourceOption,
    check_filter_keys,
    filter_expression,
    require_question,
    retrieval_overrides,
)
from milvus_rag.errors import MilvusRAGError
from milvus_rag.store import HEADING_FIELD, SOURCE_FIELD


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
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Answer QUESTION from the ingested documents, then list the sources used.

    With llm.fallbacks, the next endpoint answers when one is unreachable, times out,
    rate limits or fails with a 5xx (a warning says so; --json has "endpoint").
    """
    require_question(question)
    settings = settings_for(
        config, retrieval_overrides(k, mode, mmr), uri=uri, collection=collection
    )
    expr = filter_expression(source, filter_)
    from milvus_rag.llm import EndpointRecorder, chat_model_from_settings

    llm = chat_model_from_settings(settings)  # raises on a missing key before any I/O
    model = ModelPreload(settings)  # loads while LangChain is imported
    from milvus_rag.chains import build_rag_chain_with_sources, source_of
    from milvus_rag.retriever import MilvusRAGRetriever

    retriever = MilvusRAGRetriever.from_settings(settings, embeddings=model.ready(), expr=expr)
    retriever.ensure_not_empty()
    check_filter_keys(retriever, filter_)
    chain = build_rag_chain_with_sources(retriever=retriever, llm=llm)
    endpoint = EndpointRecorder()
    run = {"callbacks": [endpoint]}
    context: list[Any] = []
    if as_json or no_stream:
        result = chain.invoke(question, run)  # type: ignore[arg-type]
        answer, context = result["answer"], result["context"]
        if as_json:
            echo_json(
                {
                    "answer": answer,
                    "sources": [source_of(d) for d in context],
                    "endpoint": endpoint.base_url,
                    "config_file": config_file_of(settings),
                }
            )
            return
        typer.echo(answer)
    else:
        answered = False
        try:
            for part in chain.stream(question, run):  # type: ignore[arg-type]
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
        heading = doc.metadata.get(HEADING_FIELD)
        where = f"{doc.metadata.get(SOURCE_FIELD)}" + (f" ({heading})" if heading else "")
        typer.echo(f"  [{rank}] {printable(where)}  score {doc.metadata.get('score', 0.0):.3f}")
