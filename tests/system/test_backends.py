"""One contract, every Milvus deployment: Milvus Lite, `milvus-lite server`, Milvus 2.3.

Each subclass of :class:`BackendContract` runs the same tests against another URI.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import Settings
from milvus_rag.store import connect, count_entities
from milvus_rag.sync import ingest

pytestmark = pytest.mark.slow

DOCS = {
    "faq.md": (
        "# Storage FAQ\n\n"
        "#### Where does Milvus store data?\n\n"
        "Inserted data goes to object storage as incremental logs; metadata goes to etcd.\n\n"
        "#### Can a collection be renamed?\n\nYes, with rename_collection.\n"
    ),
    "zebra.md": "# Zebras\n\nZebras graze on the savanna grass all day long.\n",
    "bread.md": "# Bread\n\nBread is baked in a hot oven until the crust is brown.\n",
}
_names = itertools.count()


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


class BackendContract:
    """What every deployment must do the same way."""

    @pytest.fixture
    def uri(self, tmp_path: Path) -> str:
        raise NotImplementedError

    @pytest.fixture
    def settings(self, make_settings: Callable[..., Settings], uri: str) -> Settings:
        return make_settings(milvus={"uri": uri, "collection": f"contract_{next(_names)}"})

    def test_ingest_search_and_rerun(self, settings: Settings, tmp_path: Path) -> None:
        root = _write(tmp_path / "docs", DOCS)
        first = ingest(root, settings)
        assert first.added == 3 and first.chunks_written > 3
        docs = MilvusRAGRetriever.from_settings(settings).invoke("zebras on the savanna")
        assert docs[0].metadata["source"] == "zebra.md"
        again = ingest(root, settings)
        assert (again.unchanged, again.chunks_written, again.chunks_deleted) == (3, 0, 0)

    def test_update_and_prune(self, settings: Settings, tmp_path: Path) -> None:
        root = _write(tmp_path / "docs", DOCS)
        ingest(root, settings)
        client = connect(settings.milvus)
        try:
            before = count_entities(client, settings.milvus.collection)
        finally:
            client.close()
        (root / "bread.md").write_text("# Bread\n\nSourdough rises overnight in a cool room.\n")
        (root / "zebra.md").unlink()
        report = ingest(root, settings, prune=True)
        assert (report.updated, report.deleted, report.unchanged) == (1, 1, 1)
        docs = MilvusRAGRetriever.from_settings(settings, k=10).invoke("sourdough bread")
        assert {d.metadata["source"] for d in docs} == {"faq.md", "bread.md"}
        assert any("Sourdough" in d.page_content for d in docs)
        assert not any("oven" in d.page_content for d in docs)
        client = connect(settings.milvus)
        try:
            assert count_entities(client, settings.milvus.collection) < before
        finally:
            client.close()

    def test_question_view_and_one_chunk_each(self, settings: Settings, tmp_path: Path) -> None:
        ingest(_write(tmp_path / "docs", DOCS), settings)
        docs = MilvusRAGRetriever.from_settings(settings, k=10).invoke(
            "Where does Milvus store data?"
        )
        assert docs[0].metadata["heading"] == "Storage FAQ > Where does Milvus store data?"
        keys = [(d.metadata["source"], d.metadata["position"]) for d in docs]
        assert len(keys) == len(set(keys))

    def test_hybrid_mode_works_or_falls_back(self, settings: Settings, tmp_path: Path) -> None:
        hybrid = settings.model_copy(
            update={"retrieval": settings.retrieval.model_copy(update={"mode": "hybrid"})}
        )
        ingest(_write(tmp_path / "docs", DOCS), hybrid)
        docs = MilvusRAGRetriever.from_settings(hybrid).invoke("rename_collection")
        assert docs[0].metadata["source"] == "faq.md"


class TestMilvusLite(BackendContract):
    @pytest.fixture
    def uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "contract.db")


class TestMilvusLiteServer(BackendContract):
    @pytest.fixture(scope="class")
    def served(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        from tests.support.lite_server import LiteServer

        server = LiteServer(tmp_path_factory.mktemp("contract-lite")).start()
        yield server.uri
        server.stop()

    @pytest.fixture
    def uri(self, served: str) -> str:
        return served


@pytest.mark.server
class TestMilvusServer(BackendContract):
    @pytest.fixture
    def uri(self, milvus_server: object) -> str:
        return milvus_server.uri  # type: ignore[attr-defined]
