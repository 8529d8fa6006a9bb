"""Typed errors as HTTP answers: the status of each error class and the JSON error body.

Imports nothing of FastAPI at module level (``milvus_rag.server`` re-exports
:data:`STATUS_OF` and :func:`status_of` without the server extra).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import (
    EmptyCollectionError,
    IngestLockedError,
    LLMError,
    LLMRateLimitError,
    LLMTimeoutError,
    MilvusRAGError,
    MissingAPIKeyError,
    SchemaMismatchError,
    StoreLockedError,
    StoreUnavailableError,
)
from milvus_rag.telemetry import record_error

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

    from milvus_rag.redaction import Redactor

__all__ = [
    "STATUS_OF",
    "Refused",
    "error_body",
    "install_error_handlers",
    "json_error",
    "status_of",
]

#: HTTP status for typed errors: the nearest listed class in the error's MRO wins; others 500.
STATUS_OF: dict[type[MilvusRAGError], int] = {
    EmptyCollectionError: 503,
    StoreUnavailableError: 503,
    StoreLockedError: 503,
    IngestLockedError: 503,
    SchemaMismatchError: 409,  # e.g. a per-request mode the collection was not built for
    MissingAPIKeyError: 503,  # retrieval-only mode: the answer routes are off
    LLMRateLimitError: 429,
    LLMTimeoutError: 504,
    LLMError: 502,  # auth, not found, server error, unreachable: the upstream endpoint failed
}


def status_of(error: MilvusRAGError) -> int:
    """The HTTP status a typed error is served with."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


class Refused(Exception):
    """A request the edge refuses before anything runs (a bad question, too many inputs)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def error_body(message: str, type_: str) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type"}}``."""
    return {"error": {"message": message, "type": type_}}


def json_error(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """An error response whose JSON is ASCII: a lone surrogate echoed from the request
    (``"\\ud800"``) stays an escape instead of failing the UTF-8 encoding (a 500)."""
    from fastapi.responses import Response

    content = json.dumps(body, ensure_ascii=True).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def install_error_handlers(app: FastAPI, redactor: Redactor) -> None:
    """JSON error bodies, every one with its secrets masked by ``redactor``."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MilvusRAGError)
        record_error(exc)
        return json_error(error_body(redactor.redact(exc), type(exc).__name__), status_of(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return json_error(error_body(redactor.redact(exc), "invalid_request_error"), exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        body = error_body(redactor.redact(exc.detail), "invalid_request_error")
        return json_error(body, exc.status_code, dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's own handler, except that a non-UTF-8 body echoed as "input" is no 500.
        assert isinstance(exc, RequestValidationError)
        text = {bytes: lambda raw: raw.decode("utf-8", "replace")}
        detail = jsonable_encoder(exc.errors(), custom_encoder=text)
        return json_error({"detail": redactor.redact_data(detail)}, 422)

    app.add_exception_handler(MilvusRAGError, typed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Refused, refused)
