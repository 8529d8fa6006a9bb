"""`milvus_rag.loaders.chunks`: ``cap_bytes``, chunks held to Milvus's byte limit."""

from __future__ import annotations

import pytest
from milvus_rag.loaders.splitters import (
    Chunk,
    cap_bytes,
)

# ---------------------------------------------------------------------------
# cap_bytes
# ---------------------------------------------------------------------------


def test_cap_bytes_leaves_small_chunks_untouched() -> None:
    chunks = [Chunk("a", {"i": 1}), Chunk("b" * 100, {"i": 2})]
    out = cap_bytes(chunks, max_bytes=100)
    assert len(out) == 2
    assert out[0] is chunks[0] and out[1] is chunks[1]


def test_cap_bytes_splits_only_oversized_chunk_and_keeps_order() -> None:
    big = Chunk("x" * 250, {"heading": "H"})
    chunks = [Chunk("first", {}), big, Chunk("last", {})]
    out = cap_bytes(chunks, max_bytes=100)
    assert out[0] is chunks[0] and out[-1] is chunks[2]
    middle = out[1:-1]
    assert [len(c.text) for c in middle] == [100, 100, 50]
    assert "".join(c.text for c in middle) == big.text
    assert all(c.metadata == {"heading": "H"} for c in middle)


def test_cap_bytes_prefers_newline_then_space() -> None:
    text = "a" * 60 + "\n" + "b" * 20 + " " + "c" * 60
    out = cap_bytes([Chunk(text, {})], max_bytes=100)
    assert out[0].text == "a" * 60 + "\n"
    assert "".join(c.text for c in out) == text
    spaced = "a" * 60 + " " + "b" * 60
    out = cap_bytes([Chunk(spaced, {})], max_bytes=100)
    assert out[0].text == "a" * 60 + " "


@pytest.mark.parametrize("char", ["é", "漢", "😀"])
def test_cap_bytes_never_breaks_multibyte_characters(char: str) -> None:
    text = ("ab" + char) * 1000
    out = cap_bytes([Chunk(text, {})], max_bytes=101)
    assert len(out) > 1
    for chunk in out:
        assert 0 < len(chunk.text.encode("utf-8")) <= 101
    assert "".join(c.text for c in out) == text


def test_cap_bytes_default_is_milvus_limit() -> None:
    text = "é" * 40000  # 80,000 bytes
    out = cap_bytes([Chunk(text, {})])
    assert [len(c.text.encode()) for c in out] == [65534, 80000 - 65534]


def test_cap_bytes_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError):
        cap_bytes([Chunk("abc", {})], max_bytes=3)
