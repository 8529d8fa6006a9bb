"""``milvus-rag search``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    UriOption,
    command,
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
    ThresholdOption,
    check_filter_keys,
    filter_expression,
    require_question,
    retrieval_overrides,
)
from milvus_rag.store import HEADING_FIELD, SOURCE_FIELD

if TYPE_CHECKING:
    from langchain_core.documents import Document

SearchFormat = Literal["table", "json", "tutorial"]

FormatOption = Annotated[
    SearchFormat | None,
    typer.Option(
        "--format",
        help="table (default): rank, score, source, heading, first line; json: text, source "
        "and score of each passage; tutorial: the tutorial's JSON list of (text, distance).",
        show_default=False,
    ),
]


@command
def search(
    question: Annotated[str, typer.Argument(help="The question to search for.")],
    k: KOption = None,
    mode: ModeOption = None,
    source: SourceOption = None,
    filter_: FilterOption = None,
    mmr: MMROption = False,
    threshold: ThresholdOption = None,
    output: FormatOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the passages closest to QUESTION with their scores, best first."""
    from milvus_rag.errors import ConfigError

    require_question(question, "query")
    if as_json and output not in (None, "json"):
        raise ConfigError(f"--json and --format {output} ask for two formats; give one")
    fmt: SearchFormat = "json" if as_json else output or "table"
    settings = settings_for(
        config,
        retrieval_overrides(k, mode, mmr, threshold),
        uri=uri,
        collection=collection,
    )
    expr = filter_expression(source, filter_)
    model = ModelPreload(settings)  # loads while LangChain is imported
    from milvus_rag.retriever import MilvusRAGRetriever

    retriever = MilvusRAGRetriever.from_settings(settings, embeddings=model.ready(), expr=expr)
    retriever.ensure_not_empty()
    check_filter_keys(retriever, filter_)
    docs = retriever.invoke(question)
    if fmt == "json":
        from milvus_rag.chains import source_of

        echo_json([source_of(doc) for doc in docs])
    elif fmt == "tutorial":
        import json

        # The tutorial prints json.dumps([[text, distance], ...], indent=4).
        typer.echo(json.dumps([[d.page_content, d.metadata["score"]] for d in docs], indent=4))
    else:
        for line in result_table(docs):
            typer.echo(line)


def result_table(docs: list[Document], width: int | None = None) -> list[str]:
    """Lines of a table (rank, score, source, heading, first line), fitted to ``width``.

    ``width`` defaults to the terminal's (100 columns when it is not a terminal). When
    the whole source and heading leave the text at least :data:`MIN_TEXT` columns, each
    passage is one line; otherwise each passage is two: rank, score, source and heading,
    then its text on a line of its own, indented. A source or heading that still does not
    fit loses its beginning (``…/faq/operational_faq.md``): the file name and the
    innermost heading stay. Names and texts are escaped
    (:func:`~milvus_rag.cli._common.printable`).
    """
    import shutil

    if not docs:
        return ["no passage matched"]
    width = width or shutil.get_terminal_size((100, 24)).columns
    header = ("#", "score", "source", "heading", "text")
    rows = [
        (
            str(rank),
            f"{doc.metadata.get('score', 0.0):.3f}",
            printable(doc.metadata.get(SOURCE_FIELD) or ""),
            printable(doc.metadata.get(HEADING_FIELD) or ""),
            printable(_first_line(doc)),
        )
        for rank, doc in enumerate(docs, 1)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lead = widths[0] + widths[1] + 2 * 2  # rank and score, and the gaps after them
    if lead + widths[2] + widths[3] + 2 * 2 + MIN_TEXT <= width:
        widths[4] = width - lead - widths[2] - widths[3] - 2 * 2
        return [_row(cells, widths, width) for cells in [header, *rows]]
    # Two lines a passage: source and heading share the first, the source first.
    room = max(width - lead - 2, 2)
    widths[2] = min(widths[2], max(room - min(widths[3], room // 2), room // 2))
    widths[3] = max(room - widths[2], 1)
    lines = [_row(header[:4], widths[:4], width)]
    for cells in rows:
        lines.append(_row(cells[:4], widths[:4], width))
        lines.append((" " * lead + _fit(cells[4], max(width - lead, 1))).rstrip())
    return lines


#: The fewest columns of text a one-line row leaves (below: two lines a passage).
MIN_TEXT = 40


def _row(cells: tuple[str, ...], widths: list[int], width: int) -> str:
    parts = [
        _fit(cell, w) if i > 3 else _fit_tail(cell, w)
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    ]
    parts[0] = parts[0].rjust(widths[0])
    parts[1] = parts[1].rjust(widths[1])
    return "  ".join(parts).rstrip()[:width]


def _fit_tail(text: str, width: int) -> str:
    """``text`` padded to ``width``, or its end after ``…`` when longer."""
    return text.ljust(width) if len(text) <= width else "…" + text[len(text) - width + 1 :]


def _first_line(doc: Document) -> str:
    """The chunk's first line of body text (its heading path prefix left out)."""
    text = doc.page_content
    heading = doc.metadata.get(HEADING_FIELD)
    if heading and text.startswith(heading):
        text = text[len(heading) :]
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: max(width - 1, 0)] + "…"
