"""Deterministic chunking and an ingest that converges: counting, chunker state, healing."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from milvus_rag.loaders import SourceLoader

from milvus_rag.embeddings import MilvusModelEmbeddings, TokenCounter
from milvus_rag.errors import EmbeddingMismatchError
from milvus_rag.settings import Settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest, splitter_for

pytestmark = pytest.mark.slow


def _capped_tokenizer_model(src: Path, dst: Path) -> Path:
    """A copy of a model folder whose tokenizer.json truncates and pads to 128 (as MiniLM's)."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "tokenizer.json").read_text())
    data["truncation"] = {"max_length": 128, "strategy": "LongestFirst", "stride": 0}
    data["padding"] = {
        "strategy": {"Fixed": 128},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    (dst / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="module")
def capped_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _capped_tokenizer_model(tiny_model_dir, tmp_path_factory.mktemp("capped") / "model")


def test_count_tokens_is_pure_and_uncapped(capped_model: Path) -> None:
    emb = MilvusModelEmbeddings(model_dir=capped_model)
    long_text = "milvus " * 600
    before = (emb.count_tokens(long_text), emb.count_tokens("milvus data"))
    emb.embed_documents(["milvus data", long_text])  # the encoder reconfigures its tokenizer
    after = (emb.count_tokens(long_text), emb.count_tokens("milvus data"))
    assert before == after == (602, 4)
    # Counting never loaded the ONNX model; embedding still truncates to the model's limit.
    fresh = MilvusModelEmbeddings(model_dir=capped_model)
    assert fresh.count_tokens(long_text) == 602 and fresh.function is None


def test_token_counter_identity_names_the_tokenizer(
    tiny_model_dir: Path, capped_model: Path, tmp_path: Path
) -> None:
    a = TokenCounter.from_folder(tiny_model_dir)
    # Truncation and padding are not part of what counts: the same identity.
    assert a.identity == TokenCounter.from_folder(capped_model).identity
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    data = json.loads((other / "tokenizer.json").read_text())
    data["model"]["vocab"]["zzzzextra"] = len(data["model"]["vocab"])
    (other / "tokenizer.json").write_text(json.dumps(data))
    assert TokenCounter.from_folder(other).identity != a.identity


# A markdown file whose sections are longer than 128 tokens: how they are cut depends on
# counting tokens truly (a capped count would keep them whole).
GUIDE = "# Guide\n\n" + "".join(
    f"## Part {n}\n\n"
    + " ".join(f"milvus stores vector data number {n} in segment {i}." for i in range(40))
    + "\n\n"
    for n in range(4)
)
OTHERS = {f"other{i}.md": f"# Other {i}\n\n" + "index query collection " * 50 for i in range(6)}


def _zip(path: Path, files: list[tuple[str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files:
            archive.writestr(name, text)
    return path


def _guide_chunks(s: Settings) -> list[tuple[int, str, str]]:
    client = connect(s.milvus)
    try:
        rows = client.query(
            s.milvus.collection,
            filter='source == "guide.md"',
            output_fields=["position", "text", "heading"],
            limit=1000,
        )
    finally:
        client.close()
    return sorted((r["position"], r["text"], r["heading"]) for r in rows)


def test_a_file_gives_the_same_chunks_wherever_it_is(
    make_settings: Callable[..., Settings], capped_model: Path, tmp_path: Path
) -> None:
    def settings(name: str) -> Settings:
        return make_settings(
            milvus={"uri": str(tmp_path / f"{name}.db")},
            embedding={"model_dir": str(capped_model)},
            ingest={"chunk_tokens": 200, "chunk_overlap": 16, "write_batch": 4},
        )

    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "guide.md").write_text(GUIDE)
    others = list(OTHERS.items())
    first = _zip(tmp_path / "first.zip", [("guide.md", GUIDE), *others])
    last = _zip(tmp_path / "last.zip", [*others, ("guide.md", GUIDE)])
    results = {}
    for name, source in (("alone", alone), ("first", first), ("last", last)):
        s = settings(name)
        ingest(source, s)
        results[name] = _guide_chunks(s)
    s = settings("loader")
    emb = MilvusModelEmbeddings(model_dir=capped_model)
    emb.embed_documents(["warm the encoder up first"])
    loader = SourceLoader(last, splitter=splitter_for(s, emb))
    results["loader"] = sorted(
        (d.metadata["position"], d.page_content, d.metadata["heading"])
        for d in loader.lazy_load()
        if d.metadata["source"] == "guide.md"
    )
    assert len(results["alone"]) > 4  # sections were cut by their true token counts
    assert results["alone"] == results["first"] == results["last"] == results["loader"]


def _collection(s: Settings) -> dict[str, tuple[str, dict, list[float]]]:
    client = connect(s.milvus)
    try:
        rows = client.query(s.milvus.collection, filter="", output_fields=["*"], limit=16384)
    finally:
        client.close()
    out = {}
    for row in rows:
        meta = {k: v for k, v in row.items() if k not in ("id", "text", "vector")}
        out[row["id"]] = (row["text"], meta, row["vector"])
    assert len(out) == len(rows), "duplicate ids"
    return out


def assert_same_collection(got: Settings, want: Settings) -> None:
    """Same ids, texts and metadata, and the same vectors within float tolerance."""
    a, b = _collection(got), _collection(want)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key][:2] == b[key][:2], key
        np.testing.assert_allclose(a[key][2], b[key][2], atol=1e-5)


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
