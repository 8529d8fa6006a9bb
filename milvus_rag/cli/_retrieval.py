"""Retrieval options shared by ``search``, ``ask`` and ``eval``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from milvus_rag.errors import ConfigError

KOption = Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to retrieve.")]
ModeOption = Annotated[str | None, typer.Option("--mode", help="dense or hybrid.")]
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", help="Only sources under this path prefix or glob (repeatable)."),
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", help="Metadata KEY=VALUE that must match (repeatable)."),
]
MMROption = Annotated[
    bool, typer.Option("--mmr", help="Diversify results (max marginal relevance).")
]
ThresholdOption = Annotated[
    float | None, typer.Option("--threshold", help="Drop passages scoring worse than this.")
]


def retrieval_overrides(
    k: int | None, mode: str | None, mmr: bool = False, threshold: float | None = None
) -> dict[str, Any]:
    """Flag values as a ``retrieval`` settings override (unset flags left out)."""
    if mode not in (None, "dense", "hybrid"):
        raise ConfigError(f"--mode must be dense or hybrid, got {mode!r}")
    return {
        "retrieval": {
            "top_k": k,
            "mode": mode,
            "search_type": "mmr" if mmr else None,
            "score_threshold": threshold,
        }
    }


def filter_expression(sources: list[str] | None, filters: list[str] | None) -> str | None:
    """The Milvus filter for ``--source`` and ``--filter`` flags (values escaped)."""
    from milvus_rag.filters import all_of, any_of, metadata_filter, source_glob

    by_source = any_of(*(source_glob(s) for s in sources or []))
    pairs: dict[str, Any] = {}
    for item in filters or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter takes KEY=VALUE, got {item!r}")
        pairs.setdefault(key.strip(), []).append(value)
    by_metadata = metadata_filter({k: v[0] if len(v) == 1 else v for k, v in pairs.items()})
    return all_of(by_source, by_metadata)
