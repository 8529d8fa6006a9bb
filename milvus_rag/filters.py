"""Milvus filter expressions built safely from user values.

User values are data, never code: :func:`quote` turns any string into a Milvus
string literal (quotes, backslashes and control characters escaped), and field
names are checked against an identifier pattern. Milvus Lite does not support
filter templating (``filter_params``), so escaping is the one mechanism used
everywhere.

Example:
    .. code-block:: python

        from milvus_rag.filters import all_of, eq, source_glob

        expr = all_of(source_glob("en/faq/*"), eq("title", 'Say "hi"'))
        # '(source like "en/faq/%") and (title == "Say \\"hi\\"")'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from milvus_rag.errors import ConfigError

__all__ = ["all_of", "any_of", "eq", "field", "in_", "metadata_filter", "quote", "source_glob"]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """A Milvus double-quoted string literal holding exactly ``value``."""
    out = []
    for char in str(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def field(name: str) -> str:
    """``name`` if it is a plain identifier; raises :class:`ConfigError` otherwise."""
    if not _FIELD.match(name):
        raise ConfigError(f"invalid metadata field name {name!r}: use letters, digits and _")
    return name


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return quote(str(value))


def eq(name: str, value: Any) -> str:
    """``name == value``."""
    return f"{field(name)} == {_literal(value)}"


def in_(name: str, values: Iterable[Any]) -> str:
    """``name in [v1, v2, ...]``."""
    return f"{field(name)} in [{', '.join(_literal(v) for v in values)}]"


def all_of(*exprs: str | None) -> str | None:
    """Join expressions with ``and`` (``None`` and empty ones dropped)."""
    parts = [f"({e})" for e in exprs if e]
    if not parts:
        return None
    return parts[0][1:-1] if len(parts) == 1 else " and ".join(parts)


def any_of(*exprs: str | None) -> str | None:
    """Join expressions with ``or`` (``None`` and empty ones dropped)."""
    parts = [f"({e})" for e in exprs if e]
    if not parts:
        return None
    return parts[0][1:-1] if len(parts) == 1 else " or ".join(parts)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def source_glob(pattern: str, name: str = "source") -> str:
    """Restrict to sources by path prefix or glob.

    ``en/faq/`` (or ``en/faq``) matches the folder's files and everything below;
    a path with a file name matches that file; a glob maps ``*`` to any run of
    characters (``/`` included) and ``?`` to one character.
    """
    if not re.search(r"[*?]", pattern):
        if pattern.endswith("/"):
            return f"{field(name)} like {quote(_like_escape(pattern) + '%')}"
        folder = quote(_like_escape(pattern) + "/%")
        return f"{field(name)} == {quote(pattern)} or {field(name)} like {folder}"
    like = "".join("%" if ch == "*" else "_" if ch == "?" else _like_escape(ch) for ch in pattern)
    like = re.sub("%+", "%", like)
    return f"{field(name)} like {quote(like)}"


def metadata_filter(values: Mapping[str, Any]) -> str | None:
    """``key == value`` for each item (lists become ``in``), joined with ``and``."""
    parts = [
        in_(key, value) if isinstance(value, (list, tuple, set)) else eq(key, value)
        for key, value in values.items()
    ]
    return all_of(*parts)
