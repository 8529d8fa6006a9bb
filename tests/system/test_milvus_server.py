"""End to end against a real Milvus standalone server (PyPI ``milvus`` 2.3.x).

Milvus 2.3 has no BM25 function: hybrid mode must fall back to dense with one
warning. Skipped where ``milvus-server`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from milvus_rag.settings import Settings
from milvus_rag.sync import ingest
from tests.conftest import base_config
from tests.support.milvus_server import MilvusServer
from tests.support.openai_server import FakeOpenAIServer

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


#: Two scopes' documents, each with words no other holds.
SCOPED_DOCS = {
    "hr": ("vacation.md", "# Vacation\n\nEmployees get thirty days of vacation every year.\n"),
    "fin": ("budget.md", "# Budget\n\nThe budget for next year grows by ten percent.\n"),
}


def _scope_folders(root: Path) -> dict[str, Path]:
    """A folder per scope of :data:`SCOPED_DOCS`."""
    folders = {}
    for scope, (name, text) in SCOPED_DOCS.items():
        folder = root / "scoped" / scope
        folder.mkdir(parents=True)
        (folder / name).write_text(text)
        folders[scope] = folder
    return folders


def _scoped_rows(s: Settings) -> list[tuple[str, str | None, str]]:
    """(id, source, scope) of every row of the collection, sorted."""
    from milvus_rag.store import ID_FIELD, SCOPE_FIELD, SOURCE_FIELD, connect, iter_rows

    client = connect(s.milvus)
    try:
        fields = [ID_FIELD, SOURCE_FIELD, SCOPE_FIELD]
        pages = iter_rows(client, s.milvus.collection, output_fields=fields)
        rows = [(r[ID_FIELD], r.get(SOURCE_FIELD), r[SCOPE_FIELD]) for p in pages for r in p]
        return sorted(rows)
    finally:
        client.close()


def _partition_key(s: Settings) -> bool:
    from milvus_rag.store import connect, scope_is_partition_key

    client = connect(s.milvus)
    try:
        return scope_is_partition_key(client, s.milvus.collection)
    finally:
        client.close()


def _scoped_searches_hold(s: Settings) -> None:
    """Each scope's searches, listings and filtered searches see its rows only."""
    from milvus_rag.filters import eq
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.scopes import restricted_to
    from milvus_rag.store import SOURCE_FIELD, connect, list_sources

    client = connect(s.milvus)
    try:
        for scope, (source, _) in SCOPED_DOCS.items():
            with restricted_to((scope,)):
                docs = MilvusRAGRetriever.from_settings(s, k=8).invoke("vacation budget year")
                assert {(d.metadata["source"], d.metadata["scope"]) for d in docs} == {
                    (source, scope)
                }
                listed = list_sources(client, s.milvus.collection)  # a query iterator
                assert [(e.source, e.scope) for e in listed] == [(source, scope)]
                for other, (name, _) in SCOPED_DOCS.items():  # a dynamic field's filter
                    found = list_sources(client, s.milvus.collection, str(eq(SOURCE_FIELD, name)))
                    assert [e.source for e in found] == ([name] if other == scope else [])
                    narrowed = MilvusRAGRetriever.from_settings(s, k=8, expr=eq(SOURCE_FIELD, name))
                    assert len(narrowed.invoke("vacation budget")) == (other == scope)
    finally:
        client.close()


def _job_result(client: Any, job: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll an upload job until it ends (the test runner's timeout bounds it)."""
    import time

    while True:
        state: dict[str, Any] = client.get(f"/documents/jobs/{job}", headers=headers).json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.05)


def test_ingest_on_the_server_makes_the_scope_its_partition_key(
    make_settings: Callable[..., Settings],
    milvus_server: MilvusServer,
    tmp_path: Path,
) -> None:
    """Two scopes ingested into a partition-keyed collection stay apart: searches, listings,
    filters, keys of each scope, uploads and deletes through the HTTP server."""
    from fastapi.testclient import TestClient

    from milvus_rag.keys import KeysFile
    from milvus_rag.server import create_app

    keys_file = tmp_path / "keys.yaml"
    s = make_settings(
        milvus={"uri": milvus_server.uri, "collection": "scoped_pk"},
        retrieval={"mode": "dense"},
        server={"keys_file": str(keys_file), "upload_dir": str(tmp_path / "uploads")},
    )
    folders = _scope_folders(tmp_path)
    ingest(folders["hr"], s, scope="hr", recreate=True)
    ingest(folders["fin"], s, scope="fin")
    assert _partition_key(s)
    _scoped_searches_hold(s)
    file = KeysFile(keys_file)
    hr, fin = ({"Authorization": f"Bearer {file.add(n, 'writer', [n])}"} for n in ("hr", "fin"))
    with TestClient(create_app(s)) as client:
        assert [d["source"] for d in client.get("/documents", headers=hr).json()["documents"]] == [
            "vacation.md"
        ]
        found = client.post("/retrieve/invoke", json={"input": "budget"}, headers=hr).json()
        assert {doc["source"] for doc in found["output"]} == {"vacation.md"}
        upload = {"file": ("audit.md", b"# Audit\n\nThe auditors visit in March.\n")}
        sent = client.post("/documents", files=upload, headers=fin)
        assert sent.status_code == 202, sent.text
        assert _job_result(client, sent.json()["id"], fin)["status"] == "done"
        assert client.delete("/documents/audit.md", headers=hr).status_code == 404
        assert client.delete("/documents/budget.md", headers=fin).status_code == 200
    assert {(source, scope) for _, source, scope in _scoped_rows(s)} == {
        ("vacation.md", "hr"),
        ("audit.md", "fin"),
    }


def test_langchain_writes_without_a_scope_land_in_the_default_scope(
    make_settings: Callable[..., Settings], milvus_server: MilvusServer, tmp_path: Path
) -> None:
    """Milvus 2.3 has no default values: the store fills the partition key LangChain's
    ``add_texts`` and ``add_documents`` leave out."""
    from langchain_core.documents import Document

    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.scopes import restricted_to
    from milvus_rag.store import open_vector_store

    s = make_settings(
        milvus={"uri": milvus_server.uri, "collection": "scoped_langchain"},
        retrieval={"mode": "dense"},
    )
    ingest(_scope_folders(tmp_path)["hr"], s, scope="hr", recreate=True)
    store = open_vector_store(s, embeddings_from_settings(s))
    store.add_texts(["Lunch is served at noon."], [{"source": "lunch.md"}], ids=["lc-1"])
    store.add_texts(["Parking is free."], ids=["lc-2"])
    store.add_documents(
        [Document("Payslips come monthly.", metadata={"source": "pay.md", "scope": "hr"})],
        ids=["lc-3"],
    )
    # Milvus 2.3 upserts into the wrong partition: the store deletes and inserts there.
    store.upsert(ids=["lc-2"], documents=[Document("Parking is free.", metadata={"scope": "fin"})])
    rows = {row_id: (source, scope) for row_id, source, scope in _scoped_rows(s)}
    assert rows["lc-1"] == ("lunch.md", "default")
    assert rows["lc-2"] == (None, "fin")
    assert rows["lc-3"] == ("pay.md", "hr")
    assert _partition_key(s)
    for scope, wanted in (("default", {"lc-1"}), ("fin", {"lc-2"}), ("hr", {"lc-3"})):
        with restricted_to((scope,)):
            found = MilvusRAGRetriever.from_settings(s, k=20).invoke("lunch parking payslips")
        assert {d.metadata["scope"] for d in found} == {scope}
        assert {d.metadata["id"] for d in found if d.metadata["id"].startswith("lc-")} == wanted


def test_migrate_to_the_server_makes_the_scope_its_partition_key(
    make_settings: Callable[..., Settings], milvus_server: MilvusServer, tmp_path: Path
) -> None:
    from milvus_rag.migrate import migrate
    from milvus_rag.store import lite_engine

    lite = make_settings(retrieval={"mode": "dense"})
    folders = _scope_folders(tmp_path)
    ingest(folders["hr"], lite, scope="hr")
    ingest(folders["fin"], lite, scope="fin")
    target = lite.milvus.model_copy(
        update={"uri": milvus_server.uri, "collection": "scoped_migrated"}
    )
    report = migrate(lite, target, recreate=True)
    served = lite.model_copy(update={"milvus": target})
    assert report.target_count == report.source_count > 0
    assert _partition_key(served)
    if not (lite_engine() or "").startswith("3."):
        assert not _partition_key(lite)  # Milvus Lite 2.5.1 keeps a dynamic field
    assert _scoped_rows(served) == _scoped_rows(lite)
    _scoped_searches_hold(served)
    # A rerun writes every row again (upserts: a delete and an insert on Milvus 2.3).
    assert migrate(lite, target).target_count == report.source_count
    assert _scoped_rows(served) == _scoped_rows(lite)
    _scoped_searches_hold(served)


def test_a_dynamic_scope_collection_stays_scoped_and_doctor_notes_it(
    make_settings: Callable[..., Settings],
    milvus_server: MilvusServer,
    tmp_path: Path,
    tiny_model_dir: Path,
    llm_server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collection made before the partition key (its scope a dynamic field) is written,
    searched and listed by scope as before; doctor says how to get partition pruning."""
    import yaml
    from typer.testing import CliRunner

    import milvus_rag.store.collection as collection
    from milvus_rag.cli import app

    milvus = {"uri": milvus_server.uri, "collection": "scoped_dynamic"}
    s = make_settings(milvus=milvus, retrieval={"mode": "dense"})
    folders = _scope_folders(tmp_path)
    with monkeypatch.context() as before:  # the schema of milvus-rag before the partition key
        before.setattr(collection, "scope_field_options", lambda client: None)
        ingest(folders["hr"], s, scope="hr", recreate=True)
    ingest(folders["fin"], s, scope="fin")
    assert not _partition_key(s)
    _scoped_searches_hold(s)
    config = base_config(tmp_path / "unused.db", tiny_model_dir, llm_server)
    config.update(milvus=milvus, retrieval={"mode": "dense"})
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["doctor", "--offline", "--config", str(path)])
    assert result.exit_code == 0, result.output
    (line,) = [li for li in result.output.splitlines() if li.split()[1:2] == ["scope"]]
    assert line.startswith("note") and "not the partition key" in line, line
    assert "ingest --recreate" in line
    ingest(folders["hr"], s, scope="hr", recreate=True)
    result = CliRunner().invoke(app, ["doctor", "--offline", "--config", str(path)])
    (line,) = [li for li in result.output.splitlines() if li.split()[1:2] == ["scope"]]
    assert line.startswith("ok") and "the scope is its partition key" in line, line
