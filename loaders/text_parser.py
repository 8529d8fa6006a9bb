"""Markdown and plain text: decoding bytes to text, and telling text from binary.

Runs in the calling process (no worker): :func:`parse_text` decodes UTF-8
(BOM stripped), UTF-16/32 with a BOM, else cp1252 or latin-1 with a warning;
:func:`looks_binary` is the sniff other parsers share.

The parser worker loads this file by path: standard library and
:mod:`milvus_rag.loaders.parser_base` only.
"""

from __future__ import annotations

import codecs

from milvus_rag.loaders.parser_base import UnreadableFile

__all__ = ["looks_binary", "parse_text"]

_SNIFF_BYTES = 8192
_BINARY_CONTROL_RATIO = 0.30


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"


def looks_binary(data: bytes) -> bool:
    """NUL bytes or more than 30% control characters in the first 8 KiB."""
    sample = data[:_SNIFF_BYTES]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > _BINARY_CONTROL_RATIO * len(sample)


_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def parse_text(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Decode a text file: UTF-8 (BOM stripped), UTF-16/32 with BOM, else cp1252/latin-1."""
    notes: tuple[str, ...] = ()
    for bom, codec in _UNICODE_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise UnreadableFile(f"invalid {codec.upper()} text: {exc.reason}") from None
            break
    else:
        if looks_binary(data):
            raise UnreadableFile("binary content")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, encoding = data.decode("latin-1"), "latin-1"
            notes = (f"not UTF-8; decoded as {encoding}",)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text or text.isspace():
        raise UnreadableFile("empty file")
    return text, notes
