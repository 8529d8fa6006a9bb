"""``milvus-rag eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    JsonOption,
    UriOption,
    command,
    echo_json,
    printable,
    settings_for,
)
from milvus_rag.cli._retrieval import KOption, ModeOption, retrieval_overrides


@command
def evaluate(
    questions: Annotated[Path, typer.Argument(help='JSONL: {"question": ..., "sources": [paths]}')],
    k: KOption = None,
    mode: ModeOption = None,
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Measure retrieval on QUESTIONS: hit@k, MRR@k, recall@k, latency p50/p95."""
    from milvus_rag.evaluation import evaluate as run_eval
    from milvus_rag.evaluation import load_questions
    from milvus_rag.retriever import MilvusRAGRetriever

    settings = settings_for(config, retrieval_overrides(k, mode), uri=uri, collection=collection)
    items = load_questions(questions)
    retriever = MilvusRAGRetriever.from_settings(settings)
    report = run_eval(items, retriever, k=settings.retrieval.top_k, mode=settings.retrieval.mode)
    if as_json:
        echo_json(report.as_dict())
        return
    for miss in report.misses:
        got = ", ".join(str(r["source"]) for r in miss.retrieved) or "nothing"
        wanted = ", ".join(miss.sources)
        typer.echo(printable(f"miss: {miss.question}  (wanted {wanted}; got {got})"))
    typer.echo(report.summary())
