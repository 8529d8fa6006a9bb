"""Glob patterns over the POSIX relative paths of a source's files (``--glob``)."""

from __future__ import annotations

import functools
import re

from milvus_rag.errors import SourceError

__all__ = ["glob_match"]


def glob_match(path: str, pattern: str) -> bool:
    """Tell whether a POSIX relative path matches a glob pattern.

    ``*`` and ``?`` never cross ``/``; a ``**`` component matches any number of
    directories, none included (``a/**/b`` matches ``a/b``); ``[abc]``,
    ``[a-z]`` and ``[!abc]`` are character classes. Matching is case-sensitive
    and a leading ``./`` in the pattern is ignored.

    Args:
        path: relative path with ``/`` separators.
        pattern: the glob.

    Returns:
        True when the whole path matches.

    Raises:
        SourceError: the pattern is not a valid glob.
    """
    return _compile_glob(pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=256)
def _compile_glob(pattern: str) -> re.Pattern[str]:
    text = pattern
    while text.startswith("./"):
        text = text[2:]
    segments = text.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(segment) + ("" if last else "/"))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise SourceError(f"invalid glob pattern {pattern!r}: {exc}; fix --glob") from exc


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        if char == "*":
            while i < n and segment[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            end = i + 1
            if end < n and segment[end] in "!^":
                end += 1
            if end < n and segment[end] == "]":
                end += 1
            while end < n and segment[end] != "]":
                end += 1
            if end >= n:
                out.append(re.escape(char))
            else:
                body = segment[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                escaped = "".join(c if c == "-" else re.escape(c) for c in body)
                out.append(f"[^/{escaped}]" if negate else f"(?!/)[{escaped}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
