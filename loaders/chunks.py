"""``Chunk``, one piece of a document, and the byte cap every chunk obeys (:func:`cap_bytes`:
the Milvus ``VARCHAR`` limit, :data:`MAX_TEXT_BYTES` UTF-8 bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_TEXT_BYTES", "Chunk", "cap_bytes"]

#: Milvus ``VARCHAR`` maximum length, counted in UTF-8 bytes.
MAX_TEXT_BYTES = 65535


@dataclass(frozen=True)
class Chunk:
    """One piece of a document.

    Attributes:
        text: The text that is both stored and embedded.
        metadata: Per-chunk metadata, e.g. ``{"heading": "Product FAQ > Where does
            Milvus store data?", "title": ..., "summary": ..., "doc_id": ...}``.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _split_to_bytes(text: str, max_bytes: int) -> list[str]:
    """Cut ``text`` into consecutive pieces of at most ``max_bytes`` UTF-8 bytes.

    Cuts only between characters, preferring (in the second half of each window) just
    after a newline, then just after other whitespace.  ``"".join(result) == text``.
    """
    pieces: list[str] = []
    rest = text
    while rest:
        encoded = rest.encode("utf-8", "surrogatepass")
        if len(encoded) <= max_bytes:
            pieces.append(rest)
            break
        # Longest character prefix that fits: drop a trailing partial character.
        limit = len(encoded[:max_bytes].decode("utf-8", "ignore"))
        limit = max(limit, 1)
        window = rest[:limit]
        floor = limit // 2
        cut = window.rfind("\n") + 1
        if cut <= floor:
            cut = max(window.rfind(" "), window.rfind("\t")) + 1
        if cut <= floor:
            cut = limit
        pieces.append(rest[:cut])
        rest = rest[cut:]
    return pieces


def cap_bytes(chunks: list[Chunk], max_bytes: int = MAX_TEXT_BYTES) -> list[Chunk]:
    """Split every chunk whose UTF-8 encoding exceeds ``max_bytes`` bytes.

    Oversized chunks become consecutive pieces (cut at character boundaries, preferably
    after a newline or a space; concatenating the pieces gives the original text), each
    with a copy of the original metadata.  Chunks within the limit are returned as the
    same objects, and the order is kept.

    Raises:
        ValueError: if ``max_bytes`` is smaller than 4 (one UTF-8 character).
    """
    if max_bytes < 4:
        raise ValueError(f"max_bytes must be at least 4, got {max_bytes}")
    out: list[Chunk] = []
    for chunk in chunks:
        if len(chunk.text) * 4 <= max_bytes or _utf8_len(chunk.text) <= max_bytes:
            out.append(chunk)
            continue
        out.extend(
            Chunk(text=piece, metadata=dict(chunk.metadata))
            for piece in _split_to_bytes(chunk.text, max_bytes)
        )
    return out
