"""``milvus-rag sources``: listing the stored documents, their times, one vocabulary with the server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest, run

# --------------------------------------------------------------------------- sources and delete


@pytest.mark.slow
def test_sources_lists_documents(config: Path, faq_folder: Path, tiny_model_dir: Path) -> None:
    _ingest(config, faq_folder, "--splitter", "tutorial")
    result = run("sources", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("collection test_docs: 4 documents, 72 chunks")
    assert f"model {tiny_model_dir.name}, mode hybrid" in lines[0]  # the default
    assert lines[1].split()[:2] == ["source", "chunks"]
    assert len(lines) == 6 and all("tutorial" in line and "UTC" in line for line in lines[2:])

    data = json.loads(run("sources", "--json", "--config", str(config)).stdout)
    assert data["mode"] == "hybrid" and data["model"] == tiny_model_dir.name
    docs = {d["source"]: d for d in data["documents"]}
    assert set(docs) == {
        "en/faq/operational_faq.md",
        "en/faq/performance_faq.md",
        "en/faq/product_faq.md",
        "en/faq/troubleshooting.md",
    }
    assert sum(d["chunks"] for d in docs.values()) == 72
    first = docs["en/faq/product_faq.md"]
    assert first["splitter"] == "tutorial" and first["origin"] == str(faq_folder.resolve())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first["ingested_at"])


@pytest.mark.slow
def test_sources_time_follows_the_glob(config: Path, faq_folder: Path) -> None:
    from milvus_rag.settings import load_settings
    from milvus_rag.store import connect, record_ingest

    _ingest(config, faq_folder)
    settings = load_settings(config)
    client = connect(settings.milvus)
    try:  # a later run over one file only (a fixed time, to compare)
        record_ingest(
            client,
            "test_docs",
            origin=str(faq_folder.resolve()),
            glob="en/faq/product_*.md",
            splitter="markdown",
            chunker="x",
            at="2999-01-01T00:00:00+00:00",
        )
    finally:
        client.close()
    docs = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    times = {d["source"]: d["ingested_at"] for d in docs}
    assert times.pop("en/faq/product_faq.md") == "2999-01-01T00:00:00+00:00"
    assert all(t is not None and t < "2999" for t in times.values())


def test_sources_on_a_missing_database(config: Path, tmp_path: Path) -> None:
    err = one_line_error(run("sources", "--config", str(config)))
    assert "no Milvus Lite database" in err and not (tmp_path / "cli.db").exists()


@pytest.mark.slow
def test_delete_removes_documents_and_their_state(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    before = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    chunks = {d["source"]: d["chunks"] for d in before}

    result = run("delete", "en/faq/product*", "--yes", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "en/faq/product_faq.md" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        f"deleted 1 documents ({chunks['en/faq/product_faq.md']} chunks) from test_docs"
    )
    after = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    assert {d["source"] for d in after} == set(chunks) - {"en/faq/product_faq.md"}

    again = _ingest(config, faq_folder, "--json")
    report = json.loads(again.stdout)  # type: ignore[attr-defined]
    assert (report["added"], report["unchanged"]) == (1, 3)  # its sync state went with it


@pytest.mark.slow
def test_one_vocabulary_for_chunks_and_views(
    config: Path, faq_folder: Path, make_settings: object
) -> None:
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app
    from milvus_rag.settings import load_settings

    ingested = run("ingest", str(faq_folder), "--glob", "en/faq/*.md", "--config", str(config))
    assert ingested.exit_code == 0, ingested.output  # type: ignore[attr-defined]
    summary = re.search(r"chunks written (\d+) \(\+(\d+) question views\)", ingested.stdout)  # type: ignore[attr-defined]
    assert summary, ingested.stdout  # type: ignore[attr-defined]
    chunks, views = int(summary[1]), int(summary[2])
    assert chunks > 0 and views > 0
    said = f"{chunks} chunks (+{views} question views)"

    listed = run("sources", "--config", str(config))
    assert said in listed.stdout.splitlines()[0]  # type: ignore[attr-defined]
    documents = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]  # type: ignore[attr-defined]
    assert sum(d["chunks"] for d in documents) == chunks
    assert sum(d["views"] for d in documents) == views

    doctor = run("doctor", "--offline", "--config", str(config))
    assert any(
        line.startswith("ok    collection") and said in line
        for line in doctor.stdout.splitlines()  # type: ignore[attr-defined]
    ), doctor.stdout  # type: ignore[attr-defined]

    with TestClient(create_app(load_settings(config))) as client:
        ready = client.get("/ready").json()
    assert ready["checks"]["collection"]["message"].endswith(f"holds {said}")
