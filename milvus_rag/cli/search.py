"""``milvus-rag search``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from milvus_rag.cli._common import ConfigOption, JsonOption, command, echo_json, settings_for
from milvus_rag.cli._retrieval import (
    FilterOption,
    KOption,
    MMROption,
    ModeOption,
    SourceOption,
    ThresholdOption,
    filter_expression,
    retrieval_overrides,
)


@command
def search(
    question: Annotated[str, typer.Argument(help="The question to search for.")],
    k: KOption = None,
    mode: ModeOption = None,
    source: SourceOption = None,
    filter_: FilterOption = None,
    mmr: MMROption = False,
    threshold: ThresholdOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the passages closest to QUESTION with their distances, best first."""
    from milvus_rag.chains import source_of
    from milvus_rag.retriever import MilvusRAGRetriever

    settings = settings_for(config, retrieval_overrides(k, mode, mmr, threshold))
    retriever = MilvusRAGRetriever.from_settings(settings, expr=filter_expression(source, filter_))
    retriever.ensure_not_empty()
    docs = retriever.invoke(question)
    if as_json:
        echo_json([source_of(doc) for doc in docs])
        return
    # The tutorial prints json.dumps([[text, distance], ...], indent=4).
    typer.echo(json.dumps([[d.page_content, d.metadata["score"]] for d in docs], indent=4))
