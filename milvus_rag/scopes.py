"""Document scopes: which part of the collection a search, listing or delete may touch.

Every chunk records the scope it was ingested into (``ingest --scope NAME``, the
``scope`` field: the partition key of collections milvus-rag creates on a Milvus server or
Milvus Lite 3.x, a dynamic field on Milvus Lite 2.5.1, filtered alike; see
:func:`milvus_rag.store.info.scope_field_options`). The HTTP
server restricts each request to the scopes of the key it came with
(:func:`restricted_to`); the retriever and the store's listings add
:func:`scope_filter` to every Milvus filter they send, so a request's own filter,
configuration or question can only narrow what it sees, never widen it.

Outside a server request nothing is restricted (Python and CLI users own the database).

Example:
    >>> with restricted_to(("hr",)):
    ...     scope_filter()
    'scope in ["hr"]'
    >>> scope_filter() is None
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "DEFAULT_SCOPE",
    "SCOPE_FIELD",
    "current_scopes",
    "narrowed",
    "restrict",
    "restricted_to",
    "scope_filter",
]

#: The chunk field holding a chunk's scope.
SCOPE_FIELD = "scope"
#: The scope of chunks ingested without ``--scope`` (and of chunks stored before scopes).
DEFAULT_SCOPE = "default"

#: The scopes the current request may see; None: every scope.
_SCOPES: ContextVar[tuple[str, ...] | None] = ContextVar("milvus_rag_scopes", default=None)


def restrict(scopes: tuple[str, ...] | None) -> Token[tuple[str, ...] | None]:
    """Restrict what runs in the current context (a request) to ``scopes`` (None: every
    scope); returns the token that undoes it."""
    return _SCOPES.set(tuple(scopes) if scopes is not None else None)


@contextmanager
def restricted_to(scopes: tuple[str, ...] | None) -> Iterator[None]:
    """:func:`restrict` for the duration of a ``with`` block."""
    token = restrict(scopes)
    try:
        yield
    finally:
        _SCOPES.reset(token)


def current_scopes() -> tuple[str, ...] | None:
    """The scopes the current context may see; None: every scope."""
    return _SCOPES.get()


def scope_filter() -> str | None:
    """The Milvus filter holding the current context to its scopes (None: unrestricted)."""
    scopes = _SCOPES.get()
    if scopes is None:
        return None
    from milvus_rag.filters import in_

    return str(in_(SCOPE_FIELD, list(scopes)))


def narrowed(expr: str | None) -> str | None:
    """``expr`` and the current scope filter (``expr`` itself when unrestricted)."""
    scopes = scope_filter()
    if scopes is None:
        return expr
    return f"({scopes}) and ({expr})" if expr else scopes
