"""End to end against a real Milvus standalone server (PyPI ``milvus`` 2.3.x).

Milvus 2.3 has no BM25 function: hybrid mode must fall back to dense with one
warning. Skipped where ``milvus-server`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.settings import Settings
from milvus_rag.sync import ingest
from tests.support.milvus_server import MilvusServer

pytestmark = pytest.mark.server


def test_ingest_search_ask_and_hybrid_fallback(
    make_settings: Callable[..., Settings],
    milvus_server: MilvusServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from milvus_rag.chains import build_rag_chain_with_sources

    from milvus_rag.retriever import MilvusRAGRetriever

    root = tmp_path / "docs"
    root.mkdir()
    (root / "zebra.md").write_text("# Zebras\n\nZebras graze on the savanna grass all day.\n")
    (root / "bread.md").write_text("# Bread\n\nBread is baked in a hot oven until brown.\n")
    s = make_settings(
        milvus={"uri": milvus_server.uri, "collection": "server_docs"}, retrieval={"mode": "hybrid"}
    )
    with caplog.at_level("WARNING", logger="milvus_rag"):
        report = ingest(root, s, recreate=True)
        docs = MilvusRAGRetriever.from_settings(s).invoke("zebras on the savanna")
    assert report.added == 2
    assert docs[0].metadata["source"] == "zebra.md"
    assert any("falls back to dense" in r.getMessage() for r in caplog.records)
    assert ingest(root, s).unchanged == 2
    result = build_rag_chain_with_sources(s).invoke("zebras on the savanna")
    assert result["context"][0].metadata["source"] == "zebra.md"


def test_migrate_lite_to_the_server(
    make_settings: Callable[..., Settings],
    milvus_server: MilvusServer,
    faq_folder: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from milvus_rag.migrate import migrate
    from milvus_rag.retriever import MilvusRAGRetriever

    lite = make_settings(retrieval={"mode": "hybrid"})
    ingest(faq_folder, lite)
    target = lite.milvus.model_copy(update={"uri": milvus_server.uri, "collection": "migrated"})
    with caplog.at_level("WARNING", logger="milvus_rag"):
        report = migrate(lite, target, recreate=True)
    assert not report.hybrid  # Milvus 2.3 has no BM25: a dense copy, after one warning
    assert any("falls back to dense" in r.getMessage() for r in caplog.records)
    assert report.target_count == report.source_count == report.copied > 10
    served = lite.model_copy(update={"milvus": target})
    question = "How is data stored in milvus?"

    def hits(s: Settings) -> list[tuple[str, float]]:
        docs = MilvusRAGRetriever.from_settings(s, mode="dense").invoke(question)
        return [(d.metadata["source"], round(d.metadata["score"], 4)) for d in docs]

    assert hits(served) == hits(lite)
    assert migrate(lite, target).target_count == report.source_count  # rerun: no duplicates
    assert ingest(faq_folder, served).chunks_written == 0  # the copy stays incremental


def test_filter_values_round_trip_on_the_server(milvus_server: MilvusServer) -> None:
    """Control characters stay literal inside quotes: the server and Milvus Lite agree."""
    from milvus_rag.filters import eq
    from milvus_rag.settings import load_settings
    from milvus_rag.store import connect

    client = connect(load_settings(overrides={"milvus": {"uri": milvus_server.uri}}).milvus)
    client.create_collection("quoted", dimension=2, consistency_level="Strong")
    try:
        values = ['a"b', "c\\d", "e\nf", "tab\tz", "bell\x07", "\x1b[2J\x00"]
        rows = [{"id": i, "vector": [0.1, 0.2], "v": v} for i, v in enumerate(values)]
        client.insert("quoted", rows)
        for i, value in enumerate(values):
            found = client.query("quoted", filter=eq("v", value), output_fields=["id"])
            assert [r["id"] for r in found] == [i], repr(value)
    finally:
        client.drop_collection("quoted")
        client.close()
