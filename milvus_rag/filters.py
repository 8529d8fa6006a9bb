"""Milvus filter expressions built safely from user values.

User values are data, never code: :func:`quote` turns any string into a Milvus
string literal (quotes, backslashes and line breaks escaped), and field
names are checked against an identifier pattern. Each builder returns an
:class:`Expr`: a ``str`` with the values escaped inline, which every Milvus
accepts (Milvus Lite has no filter templating), that also carries the filter as
a template plus parameters; the retriever sends that form (``filter_params``)
to servers that support templating (Milvus 2.5 and later).

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
from milvus_rag.schema import SOURCE_FIELD

__all__ = [
    "Expr",
    "all_of",
    "any_of",
    "eq",
    "field",
    "in_",
    "metadata_filter",
    "quote",
    "source_glob",
]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """A Milvus double-quoted string literal holding exactly ``value``.

    Other control characters stay as they are: Milvus reads them literally inside
    quotes, and Milvus Lite knows no ``\\u`` escape.

    Raises:
        ConfigError: ``value`` is not valid Unicode text (a lone surrogate).
    """
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"filter value {text!r} is not valid Unicode text "
            f"(a lone surrogate at character {exc.start})"
        ) from None
    return '"' + "".join(_ESCAPES.get(char, char) for char in text) + '"'


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
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return quote(str(value))


class Expr(str):
    """A filter expression: the text with values escaped inline (works on every
    Milvus, Lite included), plus the same filter as a template with its values
    apart (``template``, ``params``) for servers that support filter templating.
    """

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, params: dict[str, Any]) -> Expr:
        rendered = _PLACEHOLDER.sub(lambda m: _literal(params[m.group(1)]), template)
        obj = super().__new__(cls, rendered)
        obj.template = template
        obj.params = dict(params)
        return obj


_PLACEHOLDER = re.compile(r"\{(p\d+)\}")


def _combine(joiner: str, exprs: tuple[str | None, ...]) -> str | None:
    parts = [e for e in exprs if e]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if not all(isinstance(e, Expr) for e in parts):
        return f" {joiner} ".join(f"({e})" for e in parts)
    templates: list[str] = []
    params: dict[str, Any] = {}
    for expr in parts:
        assert isinstance(expr, Expr)
        templates.append(f"({_shift(expr.template, len(params))})")
        params.update({_shift_name(k, len(params)): v for k, v in expr.params.items()})
    return Expr(f" {joiner} ".join(templates), params)


def _shift_name(name: str, offset: int) -> str:
    return f"p{int(name[1:]) + offset}"


def _shift(template: str, offset: int) -> str:
    """Renumber a template's placeholders by ``offset`` (``{p0}`` -> ``{p2}``)."""
    return _PLACEHOLDER.sub(lambda m: "{" + _shift_name(m.group(1), offset) + "}", template)


def eq(name: str, value: Any) -> Expr:
    """``name == value``."""
    return Expr(f"{field(name)} == {{p0}}", {"p0": value})


def in_(name: str, values: Iterable[Any]) -> Expr:
    """``name in [v1, v2, ...]``."""
    return Expr(f"{field(name)} in {{p0}}", {"p0": list(values)})


def all_of(*exprs: str | None) -> str | None:
    """Join expressions with ``and`` (``None`` and empty ones dropped)."""
    return _combine("and", exprs)


def any_of(*exprs: str | None) -> str | None:
    """Join expressions with ``or`` (``None`` and empty ones dropped)."""
    return _combine("or", exprs)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def source_glob(pattern: str, name: str = SOURCE_FIELD) -> Expr:
    """Restrict to sources by path prefix or glob.

    ``en/faq/`` (or ``en/faq``) matches the folder's files and everything below;
    a path with a file name matches that file; a glob maps ``*`` to any run of
    characters (``/`` included) and ``?`` to one character.
    """
    name = field(name)
    if not re.search(r"[*?]", pattern):
        if pattern.endswith("/"):
            return Expr(f"{name} like {{p0}}", {"p0": _like_escape(pattern) + "%"})
        folder = _like_escape(pattern) + "/%"
        return Expr(f"{name} == {{p0}} or {name} like {{p1}}", {"p0": pattern, "p1": folder})
    like = "".join("%" if ch == "*" else "_" if ch == "?" else _like_escape(ch) for ch in pattern)
    return Expr(f"{name} like {{p0}}", {"p0": re.sub("%+", "%", like)})


def metadata_filter(values: Mapping[str, Any]) -> str | None:
    """``key == value`` for each item (lists become ``in``), joined with ``and``."""
    parts = [
        in_(key, value) if isinstance(value, (list, tuple, set)) else eq(key, value)
        for key, value in values.items()
    ]
    return all_of(*parts)
