"""`milvus_rag.sync.plan`: deterministic chunking and an ingest that converges (chunker state, healing)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.errors import EmbeddingMismatchError
from milvus_rag.settings import Settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest
from tests.support.ingest_determinism import _collection, assert_same_collection

pytestmark = pytest.mark.slow


DOCS = {
    "a.md": "# Alpha\n\n"
    + "Milvus stores vectors in segments. " * 30
    + "\n\n## Sub\n\nMore alpha.\n",
    "b.md": "# Beta\n\nZebras graze on the savanna all day, far from any database.\n",
    "c.md": "# Gamma\n\n" + "Guitar strings are tuned with pegs. " * 40,
}


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_chunking_change_rechunks_exactly_the_affected_files(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    root = _write(tmp_path / "docs", DOCS)
    s = make_settings(ingest={"chunk_tokens": 128})
    ingest(root, s, glob="a.md", splitter="tutorial")
    ingest(root, s)  # a.md is re-chunked by the markdown splitter; b and c are new
    again = ingest(root, s)
    assert (again.unchanged, again.chunks_written, again.chunks_deleted) == (3, 0, 0)
    smaller = make_settings(ingest={"chunk_tokens": 48, "chunk_overlap": 8})
    report = ingest(root, smaller)
    assert (report.rechunked, report.unchanged) == (3, 0) and report.changed
    assert "re-chunked 3" in report.summary()
    clean = make_settings(
        milvus={"uri": str(tmp_path / "clean.db")}, ingest={"chunk_tokens": 48, "chunk_overlap": 8}
    )
    ingest(root, clean)
    assert_same_collection(smaller, clean)
    # Only the files chunked by the tutorial splitter change when asked for it.
    ingest(root, smaller, glob="b.md", splitter="tutorial")
    report = ingest(root, smaller, splitter="tutorial")
    assert (report.unchanged, report.rechunked) == (1, 2)


def test_partial_mixed_and_extra_rows_are_rewritten(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    root = _write(tmp_path / "docs", DOCS)
    s = make_settings(ingest={"chunk_tokens": 64, "chunk_overlap": 8})
    ingest(root, s)
    client = connect(s.milvus)
    try:
        rows = client.query(s.milvus.collection, filter='source == "a.md"', output_fields=["*"])
        assert len(rows) >= 3
        client.delete(s.milvus.collection, ids=[rows[0]["id"]])  # partial
        extra = dict(rows[1], id="f" * 32, position=99)  # extra, same chunking
        mixed = dict(rows[2], id="e" * 32, chunker="0" * 16)  # another chunking
        client.insert(s.milvus.collection, [extra, mixed])
        client.flush(s.milvus.collection)
    finally:
        client.close()
    report = ingest(root, s)
    assert report.updated == 1 and report.unchanged == 2
    assert (report.chunks_written, report.chunks_deleted) == (1, 2)
    clean = make_settings(
        milvus={"uri": str(tmp_path / "clean.db")}, ingest={"chunk_tokens": 64, "chunk_overlap": 8}
    )
    ingest(root, clean)
    assert_same_collection(s, clean)
    assert not ingest(root, s).changed


def test_file_that_loses_its_text_loses_its_chunks(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    root = _write(tmp_path / "docs", DOCS)
    s = make_settings()
    ingest(root, s)
    (root / "b.md").write_text("   \n")
    report = ingest(root, s)
    assert "b.md" in dict(report.skipped_files) and report.chunks_deleted >= 1
    assert all(meta["source"] != "b.md" for _, meta, _ in _collection(s).values())
    assert not ingest(root, s).changed


def test_same_named_model_with_other_weights_is_refused(
    make_settings: Callable[..., Settings], tiny_model_dir: Path, tmp_path: Path
) -> None:
    import onnx
    from onnx import numpy_helper

    root = _write(tmp_path / "docs", DOCS)
    model = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, model)
    s = make_settings(embedding={"model_dir": str(model)})
    ingest(root, s)
    graph = onnx.load(str(model / "model.onnx"))
    init = graph.graph.initializer[0]
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] += 0.5  # a small change in the middle of the file
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(graph, str(model / "model.onnx"))
    with pytest.raises(EmbeddingMismatchError, match="sha256"):
        ingest(root, make_settings(embedding={"model_dir": str(model)}))
