"""`milvus_rag.loaders.documents`: a file gives the same chunks wherever it is."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from milvus_rag.loaders import SourceLoader

from milvus_rag.embeddings import MilvusModelEmbeddings
from milvus_rag.settings import Settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest, splitter_for

pytestmark = pytest.mark.slow


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
