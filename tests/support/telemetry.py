"""What the metrics and tracing tests share: the key, a conversation, reading metric families."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from milvus_rag.settings import Settings

KEY = "k3y-for-metrics-tests"


BEARER = {"Authorization": f"Bearer {KEY}"}


FOLLOW_UP = "And how are they flushed?"


HISTORY = [
    {"role": "user", "content": "Tell me about Milvus."},
    {"role": "assistant", "content": "A vector database."},
]


def _keyed(settings: Settings) -> Settings:
    server = settings.server.model_copy(update={"api_key": SecretStr(KEY)})
    return settings.model_copy(update={"server": server})


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    """The sum of the samples called ``sample_name`` whose labels include ``labels``."""
    total = 0.0
    for family in families.values():
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
