"""Migration: Milvus Lite to another Lite file and to a served Milvus (``milvus-lite server``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError, EmbeddingMismatchError, EmptyCollectionError
from milvus_rag.migrate import migrate
from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import MilvusSettings, Settings
from milvus_rag.store import SPARSE_FIELD, collection_identity, connect, count_entities
from milvus_rag.sync import ingest

pytestmark = [pytest.mark.slow, pytest.mark.contract]


QUESTION = "How is data stored in milvus?"


@pytest.fixture
def source(make_settings: Callable[..., Settings], faq_folder: Path) -> Settings:
    s = make_settings(retrieval={"mode": "hybrid"}, ingest={"write_batch": 7})
    ingest(faq_folder, s)
    return s


def _target(s: Settings, uri: str, collection: str | None = None) -> MilvusSettings:
    return s.milvus.model_copy(update={"uri": uri, "collection": collection or s.milvus.collection})


def _with_milvus(s: Settings, target: MilvusSettings) -> Settings:
    return s.model_copy(update={"milvus": target})


def _rows(s: Settings) -> dict[str, dict[str, Any]]:
    client = connect(s.milvus)
    try:
        client.load_collection(s.milvus.collection)
        rows = client.query(s.milvus.collection, filter="", output_fields=["*"], limit=10_000)
    finally:
        client.close()
    return {row["id"]: row for row in rows}


def _hits(s: Settings, mode: str) -> list[tuple[str, float]]:
    docs = MilvusRAGRetriever.from_settings(s, mode=mode).invoke(QUESTION)
    return [(d.metadata["source"], round(d.metadata["score"], 4)) for d in docs]


def test_lite_to_lite_copies_everything(source: Settings, tmp_path: Path, faq_folder: Path) -> None:
    target = _target(source, str(tmp_path / "copy.db"))
    report = migrate(source, target)
    copy = _with_milvus(source, target)
    assert report.hybrid and report.copied == report.source_count == report.target_count > 10
    original, copied = _rows(source), _rows(copy)
    assert copied.keys() == original.keys()
    for key, row in original.items():
        same = {k: v for k, v in copied[key].items() if k not in ("vector", SPARSE_FIELD)}
        assert same == {k: v for k, v in row.items() if k not in ("vector", SPARSE_FIELD)}
        assert copied[key]["vector"] == pytest.approx(row["vector"])
    assert _hits(copy, "dense") == _hits(source, "dense")
    # Milvus Lite scores BM25 with per-segment statistics: same passages, scores may differ.
    assert [h[0] for h in _hits(copy, "hybrid")] == [h[0] for h in _hits(source, "hybrid")]
    src_client, dst_client = connect(source.milvus), connect(target)
    assert collection_identity(dst_client, target.collection) == collection_identity(
        src_client, source.milvus.collection
    )
    src_client.close()
    dst_client.close()
    # Later ingests into the copy stay incremental.
    rerun = ingest(faq_folder, copy)
    assert rerun.unchanged == rerun.files_seen > 0 and rerun.chunks_written == 0


def test_rerun_and_resume_never_duplicate(source: Settings, tmp_path: Path) -> None:
    target = _target(source, str(tmp_path / "copy.db"))
    first = migrate(source, target)
    client = connect(target)
    gone = sorted(_rows(_with_milvus(source, target)))[:10]
    client.delete(target.collection, ids=gone)  # as if the first run had stopped early
    client.flush(target.collection)
    client.close()
    again = migrate(source, target)
    assert again.target_count == first.source_count == again.source_count
    assert sorted(_rows(_with_milvus(source, target))) == sorted(_rows(source))


def test_stop_words_travel(
    make_settings: Callable[..., Settings], faq_folder: Path, tmp_path: Path
) -> None:
    s = make_settings(retrieval={"mode": "hybrid", "bm25_stop_words": ["milvus"]})
    ingest(faq_folder, s)
    target = _target(s, str(tmp_path / "copy.db"))
    migrate(
        s.model_copy(
            update={"retrieval": s.retrieval.model_copy(update={"bm25_stop_words": "english"})}
        ),
        target,
    )
    client = connect(target)
    client.load_collection(target.collection)
    hits = client.search(
        target.collection,
        data=["milvus"],
        anns_field=SPARSE_FIELD,
        limit=3,
        search_params={"metric_type": "BM25", "params": {"drop_ratio_search": 0}},
    )
    client.close()
    assert hits[0] == []  # "milvus" is a stop word in the source, hence in the copy


def test_refusals(source: Settings, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="source itself"):
        migrate(source, source.milvus)
    other = make_settings(milvus={"uri": str(tmp_path / "empty.db")})
    with pytest.raises(EmptyCollectionError, match="nothing to migrate"):
        migrate(other, _target(other, str(tmp_path / "x.db")))
    # A target built with another embedding model is refused, then replaced on --recreate.
    target = _target(source, str(tmp_path / "copy.db"))
    client = connect(target)
    from milvus_rag.store import record_identity

    migrate(source, target)
    record_identity(client, target.collection, {"model": "other", "dim": 3})
    client.close()
    with pytest.raises(EmbeddingMismatchError, match="--recreate"):
        migrate(source, target)
    assert migrate(source, target, recreate=True).target_count == count_rows(source)


def count_rows(s: Settings) -> int:
    client = connect(s.milvus)
    try:
        return count_entities(client, s.milvus.collection)
    finally:
        client.close()


@pytest.fixture
def lite_server(tmp_path: Path) -> Iterator[Any]:
    from tests.support.lite_server import LiteServer

    server = LiteServer(tmp_path / "served").start()
    yield server
    server.stop()


def test_lite_to_served_milvus_with_bm25(source: Settings, lite_server: Any) -> None:
    target = _target(source, lite_server.uri, "served_docs")
    report = migrate(source, target)
    assert report.hybrid and report.target_count == report.source_count
    served = _with_milvus(source, target)
    assert _hits(served, "hybrid")[0][0] == _hits(source, "hybrid")[0][0]


def test_cli_migrate(source: Settings, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "c.yaml"
    sections = {
        "milvus": {"uri": source.milvus.uri, "collection": source.milvus.collection},
        "embedding": {"model_dir": str(source.embedding.model_dir)},
    }
    config.write_text(yaml.safe_dump(sections))
    target = str(tmp_path / "cli-copy.db")
    result = CliRunner().invoke(app, ["migrate", "--to", target, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "copied" in result.output and target in result.output
    again = CliRunner().invoke(app, ["migrate", "--to", target, "--config", str(config), "--json"])
    assert again.exit_code == 0
    bad = CliRunner().invoke(
        app, ["migrate", "--to", target, "--to-collection", "bad name!", "--config", str(config)]
    )
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1


def test_target_left_without_its_record_is_completed(source: Settings, tmp_path: Path) -> None:
    """A migrate killed between creating the target and recording it (older releases):
    the empty target is completed by the next run; a target with chunks and no record
    is refused with migrate's own way out, never "re-ingest"."""
    from milvus_rag.store import META_COLLECTION, create_collection

    target = _target(source, str(tmp_path / "copy.db"))
    client = connect(target)
    record = collection_identity(connect(source.milvus), source.milvus.collection)
    assert record is not None
    identity = {k: v for k, v in record.items() if k != "metric"}
    create_collection(client, _with_milvus(source, target), identity, hybrid=True)
    client.delete(META_COLLECTION, filter=f'collection == "{target.collection}"')
    client.close()
    assert migrate(source, target).target_count == count_rows(source)
    client = connect(target)
    assert collection_identity(client, target.collection) == record
    client.delete(META_COLLECTION, filter=f'collection == "{target.collection}"')
    client.close()
    with pytest.raises(EmbeddingMismatchError, match="no embedding record") as info:
        migrate(source, target)
    assert "migrate --recreate" in str(info.value) and "re-ingest" not in str(info.value)
    assert migrate(source, target, recreate=True).target_count == count_rows(source)
