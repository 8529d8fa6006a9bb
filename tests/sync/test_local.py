"""`milvus_rag.sync.local`: incremental ingest (reruns, changes, prune, crashes, limits)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.errors import NoFilesMatchedError
from milvus_rag.settings import Settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest
from tests.support.sync import FILES, _docs

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def _rows(s: Settings) -> list[dict]:
    client = connect(s.milvus)
    try:
        client.load_collection(s.milvus.collection)  # a killed writer leaves it released
        return client.query(
            s.milvus.collection, filter="", output_fields=["id", "source", "text"], limit=16384
        )
    finally:
        client.close()


def test_rerun_writes_nothing(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = make_settings()
    root = _docs(tmp_path / "docs", FILES)
    first = ingest(root, s)
    assert (first.files_seen, first.added) == (3, 3) and first.chunks_written > 0
    before = sorted(r["id"] for r in _rows(s))
    second = ingest(root, s)
    assert (second.unchanged, second.chunks_written, second.chunks_deleted) == (3, 0, 0)
    assert not second.changed
    assert sorted(r["id"] for r in _rows(s)) == before


def test_changed_file_replaced_and_prune(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings()
    root = _docs(tmp_path / "docs", FILES)
    ingest(root, s)
    (root / "b.md").write_text("# Beta\n\nBeta now talks about bread baked in an oven.\n")
    (root / "c" / "d.md").unlink()
    report = ingest(root, s)
    assert (report.updated, report.unchanged, report.deleted) == (1, 1, 0)
    texts = {r["source"]: r["text"] for r in _rows(s) if r["source"] == "b.md"}
    assert "bread" in texts["b.md"] and all("Zebras" not in r["text"] for r in _rows(s))
    assert any(r["source"] == "c/d.md" for r in _rows(s))  # kept without --prune
    report = ingest(root, s, prune=True)
    assert report.deleted == 1
    assert not any(r["source"] == "c/d.md" for r in _rows(s))


def test_prune_respects_glob(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = make_settings()
    root = _docs(tmp_path / "docs", FILES)
    ingest(root, s)
    report = ingest(root, s, glob="c/*.md", prune=True)
    assert report.deleted == 0
    assert {r["source"] for r in _rows(s)} == {"a.md", "b.md", "c/d.md"}


def test_recreate_starts_over(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = make_settings()
    root = _docs(tmp_path / "docs", FILES)
    ingest(root, s)
    report = ingest(root, s, recreate=True)
    assert report.added == 3 and report.unchanged == 0


def test_skipped_files_are_reported(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = make_settings()
    root = _docs(tmp_path / "docs", {"ok.md": "# Ok\n\nFine text about milvus.\n", "empty.md": ""})
    (root / "bin.md").write_bytes(b"\x00\x01\x02" * 100)
    (root / "image.png").write_bytes(b"\x89PNG....")
    (root / "latin.txt").write_bytes("Caf\xe9 cr\xe8me about milvus".encode("latin-1"))
    report = ingest(root, s)
    reasons = dict(report.skipped_files)
    assert set(reasons) == {"empty.md", "bin.md", "image.png"}
    assert report.added == 2 and report.skipped == 3
    assert any("latin.txt" in w for w in report.warnings)


def test_no_files_matched(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    root = _docs(tmp_path / "docs", FILES)
    with pytest.raises(NoFilesMatchedError):
        ingest(root, make_settings(), glob="*.pdf")


def test_multibyte_chunks_fit_varchar(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings()
    huge = "# 大\n\n" + ("数据库存储向量😀" * 6000) + "\n"
    root = _docs(tmp_path / "docs", {"cjk.md": huge})
    for splitter in ("tutorial", "markdown"):
        report = ingest(root, s, splitter=splitter, recreate=True)
        assert report.chunks_written >= 2
        assert max(len(r["text"].encode("utf-8")) for r in _rows(s)) <= 65535


def test_failure_halfway_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    s = make_settings()
    root = _docs(tmp_path / "docs", FILES)
    ingest(root, s)
    before = sorted((r["id"], r["text"]) for r in _rows(s))
    for name in FILES:
        (root / name).write_text(FILES[name] + "\nChanged.\n")

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("insert failed")

    monkeypatch.setattr(MilvusClient, "insert", broken)
    with pytest.raises(RuntimeError, match="insert failed"):
        ingest(root, s)
    monkeypatch.undo()
    assert sorted((r["id"], r["text"]) for r in _rows(s)) == before


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pymilvus import MilvusClient
    from milvus_rag.settings import load_settings
    from milvus_rag.sync import ingest
    original = MilvusClient.insert
    calls = {"n": 0}
    def insert(self, *a, **k):
        calls["n"] += 1
        result = original(self, *a, **k)
        if calls["n"] == int(sys.argv[3]):
            os.kill(os.getpid(), 9)  # SIGKILL right after a batch landed
        return result
    MilvusClient.insert = insert
    s = load_settings(overrides={"milvus": {"uri": sys.argv[1], "collection": "crash"},
                                 "embedding": {"model_dir": sys.argv[2]},
                                 "ingest": {"write_batch": 7}})
    ingest(sys.argv[4], s, splitter="tutorial")
    """
)


def test_sigkill_then_rerun_equals_clean_ingest(tmp_path: Path, tiny_model_dir: Path) -> None:
    from milvus_rag.settings import load_settings

    sections = "".join(f"# Section {j}\n\nText {j} of the file.\n\n" for j in range(6))
    root = _docs(tmp_path / "docs", {f"f{i}.md": f"File {i}\n\n{sections}" for i in range(8)})
    crashed = tmp_path / "crashed.db"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(crashed), str(tiny_model_dir), "3", str(root)],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    overrides = {"embedding": {"model_dir": str(tiny_model_dir)}, "ingest": {"write_batch": 7}}
    s_crashed = load_settings(
        overrides={**overrides, "milvus": {"uri": str(crashed), "collection": "crash"}}
    )
    partial = _rows(s_crashed)
    assert 0 < len(partial) < 56
    report = ingest(root, s_crashed, splitter="tutorial")
    assert report.chunks_written == 56 - len(partial)
    s_clean = load_settings(
        overrides={
            **overrides,
            "milvus": {"uri": str(tmp_path / "clean.db"), "collection": "crash"},
        }
    )
    ingest(root, s_clean, splitter="tutorial")
    got = sorted(r["id"] for r in _rows(s_crashed))
    assert got == sorted(r["id"] for r in _rows(s_clean))
    assert len(got) == len(set(got)) and len(got) > len(partial)


def test_ingest_ends_flushed_and_big_files_skipped(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    flushed: list[str] = []
    original = MilvusClient.flush
    monkeypatch.setattr(
        MilvusClient,
        "flush",
        lambda self, name, **kw: (flushed.append(name), original(self, name, **kw))[1],
    )
    s = make_settings(ingest={"max_file_bytes": 10_000})
    root = _docs(
        tmp_path / "docs",
        {"small.md": "# S\n\nSmall file about milvus.\n", "big.md": "# B\n\n" + "x" * 20_000},
    )
    report = ingest(root, s)
    assert flushed == [s.milvus.collection]
    assert report.added == 1 and report.skipped == 1
    assert "big.md" in dict(report.skipped_files)
    flushed.clear()
    ingest(root, s)
    assert flushed == []  # nothing changed, nothing to flush


def test_hybrid_ingest_and_search_over_a_served_lite(
    make_settings: Callable[..., Settings], tmp_path: Path, lite_server: object
) -> None:
    from milvus_rag.retriever import MilvusRAGRetriever

    s = make_settings(milvus={"uri": lite_server.uri}, retrieval={"mode": "hybrid"})  # type: ignore[attr-defined]
    root = _docs(tmp_path / "docs", FILES)
    assert ingest(root, s).added == 3
    docs = MilvusRAGRetriever.from_settings(s).invoke("zebras savanna")
    assert docs[0].metadata["source"] == "b.md"
