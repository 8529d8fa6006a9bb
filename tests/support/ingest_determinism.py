"""What the ingest tests share: two collections compared row by row."""

from __future__ import annotations

import numpy as np

from milvus_rag.settings import Settings
from milvus_rag.store import connect


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
