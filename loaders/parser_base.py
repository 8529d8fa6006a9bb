"""What every file parser shares: the ``Parser`` signature, ``UnreadableFile``, one-line reasons.

A parser takes one file's bytes and returns ``(text, warnings)``; every failure
caused by the input is :class:`UnreadableFile`, whose ``str()`` is a one-line
reason (:func:`one_line`, :func:`describe`).

The parser worker (:mod:`milvus_rag.loaders.parser_worker`) loads this file by
path, so it imports only the standard library and ``milvus_rag/errors.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from milvus_rag.errors import SourceError

__all__ = ["Parser", "UnreadableFile", "describe", "one_line"]

_MAX_REASON = 300


class UnreadableFile(SourceError):
    """The file cannot be turned into text; ``str(exc)`` is the one-line reason."""


# Parsers take the file's bytes and return (text, warnings).
Parser = Callable[[bytes], "tuple[str, tuple[str, ...]]"]


def one_line(message: object, limit: int = _MAX_REASON) -> str:
    """``message`` on one line, white space folded, cut to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    detail = one_line(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
