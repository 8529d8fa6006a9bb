"""The BM25 analyzer of hybrid collections: stop words in the schema, in search, in settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.bm25 import ENGLISH_STOP_WORDS, analyzer_params
from milvus_rag.errors import ConfigError
from milvus_rag.settings import Settings, load_settings
from milvus_rag.store import SPARSE_FIELD, connect
from milvus_rag.sync import ingest

pytestmark = [pytest.mark.slow, pytest.mark.contract]

DOCS = {
    "what.md": "# What\n\nWhat is the answer? It is what it is, and that is the point.\n",
    "zebra.md": "# Zebras\n\nZebras graze on the savanna grass.\n",
}


def _keyword_sources(settings: Settings, query: str) -> list[str]:
    client = connect(settings.milvus)
    try:
        hits = client.search(
            settings.milvus.collection,
            data=[query],
            anns_field=SPARSE_FIELD,
            limit=5,
            search_params={"metric_type": "BM25", "params": {"drop_ratio_search": 0}},
            output_fields=["source"],
        )
    finally:
        client.close()
    return [hit["entity"]["source"] for hit in hits[0]]


def _ingest(
    make_settings: Callable[..., Settings], tmp_path: Path, **retrieval: object
) -> Settings:
    root = tmp_path / "docs"
    root.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (root / name).write_text(text)
    settings = make_settings(
        retrieval={"mode": "hybrid", **retrieval}, ingest={"min_chunk_chars": 0}
    )
    ingest(root, settings)
    return settings


def test_analyzer_params() -> None:
    english = analyzer_params("english")
    assert english["tokenizer"] == "standard"
    assert english["filter"][0] == "lowercase"
    assert set(english["filter"][1]["stop_words"]) == set(ENGLISH_STOP_WORDS)
    assert analyzer_params("none") == {"tokenizer": "standard", "filter": ["lowercase"]}
    custom = analyzer_params(["The", "zebras", "the"])
    assert custom["filter"][1] == {"type": "stop", "stop_words": ["the", "zebras"]}
    with pytest.raises(ValueError, match="english"):
        analyzer_params("french")


def test_question_words_are_stop_words() -> None:
    for word in ("what", "how", "is", "the", "do", "i", "can"):
        assert word in ENGLISH_STOP_WORDS
    for word in ("index", "partition", "milvus", "search", "load", "key"):
        assert word not in ENGLISH_STOP_WORDS


def test_stop_words_never_match(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = _ingest(make_settings, tmp_path)
    assert _keyword_sources(settings, "what is the") == []
    assert _keyword_sources(settings, "what are zebras") == ["zebra.md"]


def test_stop_words_can_be_disabled(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = _ingest(make_settings, tmp_path, bm25_stop_words="none")
    assert _keyword_sources(settings, "what is the")[0] == "what.md"


def test_custom_stop_words(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = _ingest(make_settings, tmp_path, bm25_stop_words=["zebras"])
    assert _keyword_sources(settings, "zebras") == []
    assert _keyword_sources(settings, "what")[0] == "what.md"


def test_changed_stop_words_warn_until_recreate(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _ingest(make_settings, tmp_path)
    with caplog.at_level(logging.WARNING, logger="milvus_rag.store"):
        _ingest(make_settings, tmp_path, bm25_stop_words="none")
    assert "--recreate" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="milvus_rag.store"):
        _ingest(make_settings, tmp_path)
    assert "stop words" not in caplog.text


def test_stop_words_setting_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_RETRIEVAL__BM25_STOP_WORDS", '["foo", "bar"]')
    assert load_settings().retrieval.bm25_stop_words == ["foo", "bar"]
    monkeypatch.setenv("MILVUS_RAG_RETRIEVAL__BM25_STOP_WORDS", "french")
    with pytest.raises(ConfigError, match="bm25_stop_words"):
        load_settings()
