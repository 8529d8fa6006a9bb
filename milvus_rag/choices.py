"""The allowed values of enumerated settings, as ``Literal`` types.

Defined once here, with no dependencies, so that :mod:`milvus_rag.settings`
validates with them and the command line shows them in ``--help`` without
importing pydantic.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Fusion",
    "IngestEngine",
    "LLMPresetName",
    "Metric",
    "RetrievalMode",
    "SearchType",
    "SplitterName",
]

RetrievalMode = Literal["dense", "hybrid"]
"""``dense`` (vectors only) or ``hybrid`` (vectors + Milvus BM25)."""

SearchType = Literal["similarity", "mmr"]
"""``similarity`` (closest first) or ``mmr`` (maximal marginal relevance)."""

Fusion = Literal["zscore", "rrf", "weighted"]
"""How hybrid mode fuses dense and BM25 results."""

Metric = Literal["IP", "COSINE", "L2"]
"""The vector similarity metric of the collection."""

SplitterName = Literal["markdown", "tutorial"]
"""``markdown`` (heading-aware) or ``tutorial`` (the tutorial's ``split("# ")``)."""

LLMPresetName = Literal["lepton", "nvidia", "openai", "local"]
"""The named OpenAI-compatible endpoints of ``settings.LLM_PRESETS``."""

IngestEngine = Literal["local", "ray"]
"""Where ingest parses, splits and embeds: ``local`` (this process) or ``ray`` (Ray Data)."""
