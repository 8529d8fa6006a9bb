"""End to end against a real Milvus standalone server (PyPI ``milvus`` 2.3.x).

Milvus 2.3 has no BM25 function: hybrid mode must fall back to dense with one
warning. Skipped where ``milvus-server`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from milvus_rag.settings import Settings
from milvus_rag.sync import ingest
from tests.support.milvus_server import MilvusServer, milvus_server_command

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    if milvus_server_command() is None:
        pytest.skip("milvus-server (PyPI package milvus) is not installed")
    server = MilvusServer(tmp_path_factory.mktemp("milvus-data"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"milvus-server could not start here: {exc}")
    yield server
    server.stop()


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
