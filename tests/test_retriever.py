"""`milvus_rag.retriever`: LangChain's retriever suite, hybrid vs dense, MMR, thresholds, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from milvus_rag.errors import ConfigError
from milvus_rag.filters import source_glob
from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import Settings, load_settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest
from tests.support.retrieval import _retriever, _sources

pytestmark = [pytest.mark.slow, pytest.mark.contract]


class TestMilvusRAGRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _settings(self, hybrid_settings: Settings) -> None:
        self._s = hybrid_settings

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return MilvusRAGRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"settings": self._s, "mode": "dense"}

    @property
    def retriever_query_example(self) -> str:
        return "how to repair a car"


class TestMilvusRAGRetrieverHybrid(TestMilvusRAGRetriever):
    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"settings": self._s, "mode": "hybrid"}


def test_keyword_wins_for_exact_identifier(hybrid_settings: Settings) -> None:
    # The identifier is made of word pieces the model has never seen: BM25 matches it exactly.
    hybrid = _sources(_retriever(hybrid_settings, mode="hybrid").invoke("qzx7_maxsize"))
    assert hybrid[0] == "guide/config.md"
    keyword_only = _retriever(hybrid_settings, mode="hybrid", fusion="weighted", weights=(0.0, 1.0))
    docs = keyword_only.invoke("qzx7_maxsize")
    assert docs[0].metadata["source"] == "guide/config.md"
    assert all(d.metadata["score"] < docs[0].metadata["score"] for d in docs[1:])


def test_semantic_wins_for_paraphrase(hybrid_settings: Settings) -> None:
    question = "quick automobile fix"  # no keyword in common with the cars document
    dense = _sources(_retriever(hybrid_settings, mode="dense").invoke(question))
    assert dense[0] == "guide/cars.md"
    hybrid = _sources(_retriever(hybrid_settings, mode="hybrid").invoke(question))
    assert "guide/cars.md" in hybrid


def test_dense_search_matches_langchain_milvus(hybrid_settings: Settings) -> None:
    """The retriever searches its own collections through the client: the same rows,
    scores and metadata as langchain-milvus's similarity search, minus vector fields."""
    own = _retriever(hybrid_settings, mode="dense", diverse=False)
    store = own.store()
    via_store = MilvusRAGRetriever(vector_store=store, mode="dense", diverse=False)
    for query in ("repair a car", "qzx7_maxsize", "what do zebras eat"):
        ours, theirs = own.invoke(query, k=4), via_store.invoke(query, k=4)
        assert [(d.id, d.page_content) for d in ours] == [(d.id, d.page_content) for d in theirs]
        for mine, other in zip(ours, theirs, strict=True):
            assert mine.metadata["score"] == pytest.approx(other.metadata["score"], abs=1e-6)
            assert "vector" not in mine.metadata and "sparse" not in mine.metadata
            other_meta = {k: v for k, v in other.metadata.items() if k not in ("score", "sparse")}
            assert {k: v for k, v in mine.metadata.items() if k != "score"} == other_meta


def test_weighted_fusion(hybrid_settings: Settings) -> None:
    r = _retriever(hybrid_settings, mode="hybrid", fusion="weighted", weights=(0.2, 0.8))
    assert _sources(r.invoke("qzx7_maxsize"))[0] == "guide/config.md"


async def test_async_hybrid(hybrid_settings: Settings) -> None:
    docs = await _retriever(hybrid_settings, mode="hybrid").ainvoke("qzx7_maxsize")
    assert docs[0].metadata["source"] == "guide/config.md"


def test_source_filters(hybrid_settings: Settings) -> None:
    for pattern in ("faq/*", "faq/", "faq"):
        docs = _retriever(hybrid_settings, expr=source_glob(pattern), k=10).invoke("repair a car")
        assert docs and all(s.startswith("faq/") for s in _sources(docs))
    docs = _retriever(hybrid_settings, expr=source_glob("guide/cars.md")).invoke("zebra")
    assert _sources(docs) == ["guide/cars.md"]


def test_mmr_and_threshold(hybrid_settings: Settings) -> None:
    dense = {"mode": "dense"}
    docs = _retriever(hybrid_settings, search_type="mmr", k=3, fetch_k=5, **dense).invoke(
        "repair a car"
    )
    assert len(docs) == 3 and len(set(_sources(docs))) == 3
    all_docs = _retriever(hybrid_settings, k=5, **dense).invoke("repair a car")
    cut = all_docs[1].metadata["score"]
    kept = _retriever(hybrid_settings, k=5, score_threshold=cut, **dense).invoke("repair a car")
    assert len(kept) == 2


def test_k_above_max_is_refused(hybrid_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="max_k"):
        _retriever(hybrid_settings, k=60).invoke("x")


def test_hybrid_falls_back_to_dense_without_bm25(
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pymilvus import MilvusClient

    monkeypatch.setattr(MilvusClient, "get_server_version", lambda self, **kw: "v2.4.9")
    # The engine under the fake version is still Milvus Lite 2.5.1, whose scope stays a
    # dynamic field (store.info.scope_field_options): a server would make it the partition key.
    monkeypatch.setattr("milvus_rag.store.collection.scope_field_options", lambda client: None)
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nHow to repair a car engine at home.\n")
    s = load_settings(
        overrides={
            "milvus": {"uri": str(tmp_path / "old.db")},
            "embedding": {"model_dir": str(model_dir)},
            "retrieval": {"mode": "hybrid"},
        }
    )
    with caplog.at_level("WARNING", logger="milvus_rag"):
        ingest(root, s)
        docs = _retriever(s).invoke("repair a car")
    assert _sources(docs) == ["a.md"]
    warnings = [r for r in caplog.records if "falls back to dense" in r.getMessage()]
    assert warnings and "before 2.5" in warnings[0].getMessage()


# --------------------------------------------------------------------------- what documents carry

BOOKKEEPING = ("origin", "source_hash", "chunker", "chunk_count", "chunk_set", "view")


def _leaks(text: str, root: Path) -> list[str]:
    return [leak for leak in (*(f"'{k}'" for k in BOOKKEEPING), str(root)) if leak in text]


@pytest.mark.filterwarnings("ignore:This API is in beta")
def test_retriever_documents_carry_only_user_facing_metadata(hybrid_settings: Settings) -> None:
    retriever = _retriever(hybrid_settings, mode="dense")
    client = connect(hybrid_settings.milvus)
    row = client.query("retrieval", filter='source like "guide/%"', limit=1, output_fields=["*"])
    root = Path(row[0]["origin"])
    assert {"source_hash", "chunk_count", "chunker", "chunk_set", "view"} <= set(row[0])
    docs = retriever.invoke("how to repair a car")
    assert docs
    for doc in docs:
        assert not set(BOOKKEEPING) & set(doc.metadata), doc.metadata
        assert {"source", "heading", "position", "score", "id"} <= set(doc.metadata)
        assert doc.id == doc.metadata["id"]
    # As a tool handed to an LLM: the same documents, no absolute path, no bookkeeping.
    tool = retriever.as_tool(name="search_docs", description="Search the docs.")
    shown = str(tool.invoke("how to repair a car"))
    assert "guide/cars.md" in shown
    assert _leaks(shown, root) == [], shown
    # The async path too.
    import asyncio

    adocs = asyncio.run(retriever.ainvoke("how to repair a car"))
    assert all(not set(BOOKKEEPING) & set(d.metadata) for d in adocs)


def test_origin_is_opt_in(hybrid_settings: Settings) -> None:
    settings = hybrid_settings.model_copy(
        update={"retrieval": hybrid_settings.retrieval.model_copy(update={"include_origin": True})}
    )
    docs = _retriever(settings, mode="dense").invoke("how to repair a car")
    assert docs and all(Path(d.metadata["origin"]).is_absolute() for d in docs)
    assert all(not set(BOOKKEEPING[1:]) & set(d.metadata) for d in docs)
    assert "origin" not in _retriever(hybrid_settings).invoke("car")[0].metadata
