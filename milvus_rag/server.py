"""The HTTP edge: ``create_app(settings)`` serves the chains over HTTP.

A thin adapter around the chain factories (LangServe is in maintenance mode):

- ``/rag/...``: LangServe routes of :func:`~milvus_rag.chains.build_rag_chain`
  (``invoke``, ``batch``, ``stream``, ``input_schema``, ... and the playground);
- ``/rag-with-sources/...``: the same for
  :func:`~milvus_rag.chains.build_rag_chain_with_sources`;
- ``POST /v1/chat/completions`` and ``GET /v1/models``: an OpenAI-compatible
  endpoint (plain and streamed), so any OpenAI client or ``ChatOpenAI`` can ask
  questions; every response adds ``sources``: the retrieved chunks
  (``text``, ``source``, ``score``);
- ``GET /health``: liveness, without touching Milvus or the LLM.

When ``MILVUS_RAG_SERVER__API_KEY`` is set, every route but ``/health`` needs
``Authorization: Bearer KEY``. Bodies above ``server.max_body_bytes`` get 413;
questions above ``server.max_question_chars`` get 422. Typed errors become JSON
``{"error": {"message", "type"}}`` with an HTTP status (see :data:`STATUS_OF`).

Example:
    .. code-block:: python

        import uvicorn
        from milvus_rag import load_settings
        from milvus_rag.server import create_app

        uvicorn.run(create_app(load_settings()), port=8000)
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from milvus_rag.errors import (
    ConfigError,
    EmptyCollectionError,
    IngestLockedError,
    LLMError,
    LLMRateLimitError,
    LLMTimeoutError,
    MilvusRAGError,
    StoreLockedError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.settings import Settings

__all__ = ["STATUS_OF", "ChatRequest", "create_app", "status_of"]

#: HTTP status for typed errors: the nearest listed class in the error's MRO wins; others 500.
STATUS_OF: dict[type[MilvusRAGError], int] = {
    EmptyCollectionError: 503,
    StoreUnavailableError: 503,
    StoreLockedError: 503,
    IngestLockedError: 503,
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


def _error_body(message: str, type_: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_}}


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request (text content only)."""

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completions request milvus-rag reads.

    The question is the last ``user`` message; earlier turns are not used (the
    tutorial's chain answers one question from the retrieved context).
    """

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False

    def question(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""


def create_app(
    settings: Settings,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
) -> FastAPI:
    """Build the FastAPI app serving the chains built from ``settings``.

    Building it touches no network and loads no model (the store opens and the
    model loads on the first question). ``retriever`` and ``llm`` replace the
    configured ones, e.g. to serve another LangChain retriever.

    Raises:
        MissingAPIKeyError: the configured endpoint needs a key that is not set.
        ConfigError: the ``server`` extra (FastAPI, LangServe) is not installed.
    """
    try:
        from fastapi import Depends, FastAPI
        from langserve import add_routes
    except ImportError as exc:
        raise ConfigError(
            f"serving needs the server extra ({exc.name} is missing): "
            "pip install 'milvus-rag[server]'"
        ) from exc

    from milvus_rag.chains import build_rag_chain, build_rag_chain_with_sources

    http_client: Any = None
    if llm is None:
        from openai import DefaultAsyncHttpxClient

        from milvus_rag.llm import chat_model_from_settings

        # One connection pool per app, on the app's event loop (langchain-openai's shared
        # default pool would outlive the loop it was created on). Opens no connection yet.
        http_client = DefaultAsyncHttpxClient()
        # A missing key fails here, at startup.
        llm = chat_model_from_settings(settings, http_async_client=http_client)
    if retriever is None:
        from milvus_rag.retriever import MilvusRAGRetriever

        retriever = MilvusRAGRetriever.from_settings(settings)
    answer_chain = build_rag_chain(retriever=retriever, llm=llm)
    sources_chain = build_rag_chain_with_sources(retriever=retriever, llm=llm)
    limits = settings.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if http_client is not None:
            await http_client.aclose()

    app = FastAPI(
        title="milvus-rag",
        description="Answers questions over your documents (Milvus + an OpenAI-compatible LLM).",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _install_body_limit(app, limits.max_body_bytes)
    auth = [Depends(_bearer_auth(limits.api_key.get_secret_value() if limits.api_key else None))]

    for path, chain in (("/rag", answer_chain), ("/rag-with-sources", sources_chain)):
        add_routes(
            app,
            _with_question_limit(chain, limits.max_question_chars),
            path=path,
            dependencies=auth,
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": limits.model_name, "object": "model", "owned_by": "milvus-rag"}],
        }

    @app.post("/v1/chat/completions", dependencies=auth, response_model=None)
    async def chat_completions(body: ChatRequest) -> Any:
        question = body.question()
        _check_question(question, limits.max_question_chars)
        if body.stream:
            from fastapi.responses import StreamingResponse

            return StreamingResponse(
                _stream_completion(sources_chain, question, limits.model_name),
                media_type="text/event-stream",
            )
        result = await sources_chain.ainvoke(question)
        return _completion(limits.model_name, result["answer"], result["context"])

    return app


class _QuestionTooLong(Exception):
    """Raised inside the app for a question above ``server.max_question_chars``."""


def _check_question(question: str, limit: int) -> None:
    if not question.strip():
        raise _QuestionTooLong("the request holds no question (no user message with text)")
    if len(question) > limit:
        raise _QuestionTooLong(
            f"question is {len(question)} characters; the server accepts at most {limit} "
            "(server.max_question_chars)"
        )


def _with_question_limit(chain: Any, limit: int) -> Any:
    from langchain_core.runnables import RunnableLambda

    from milvus_rag.chains import QuestionInput

    def check(value: Any) -> Any:
        text = value if isinstance(value, str) else getattr(value, "question", None)
        if isinstance(value, dict):
            text = value.get("question")
        if isinstance(text, str):
            _check_question(text, limit)
        return value

    input_type: Any = str | QuestionInput
    return (RunnableLambda(check).with_types(input_type=input_type) | chain).with_config(
        run_name=chain.get_name()
    )


def _install_error_handlers(app: FastAPI) -> None:
    from fastapi.responses import JSONResponse

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MilvusRAGError)
        return JSONResponse(_error_body(str(exc), type(exc).__name__), status_code=status_of(exc))

    async def too_long(request: Request, exc: Exception) -> Response:
        return JSONResponse(_error_body(str(exc), "invalid_request_error"), status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        from starlette.exceptions import HTTPException

        assert isinstance(exc, HTTPException)
        return JSONResponse(
            _error_body(str(exc.detail), "invalid_request_error"),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    from starlette.exceptions import HTTPException

    app.add_exception_handler(MilvusRAGError, typed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(_QuestionTooLong, too_long)


def _install_body_limit(app: FastAPI, limit: int) -> None:
    app.add_middleware(_BodyLimit, limit=limit)


class _BodyLimit:
    """ASGI middleware: read the body up front and answer 413 above ``limit`` bytes."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        too_big = declared.isdigit() and int(declared) > self.limit
        messages: list[Any] = []
        size = 0
        more = not too_big
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message.get("more_body", False) and size <= self.limit
        if too_big or size > self.limit:
            await self._refuse(send)
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        message = f"request body is larger than {self.limit} bytes (server.max_body_bytes)"
        body = json.dumps(_error_body(message, "invalid_request_error")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _bearer_auth(key: str | None) -> Callable[..., Awaitable[None]]:
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBearer

    scheme = HTTPBearer(auto_error=False, description="MILVUS_RAG_SERVER__API_KEY")

    async def check(credentials: Any = Depends(scheme)) -> None:
        if key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), key.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def _sources(context: list[Any]) -> list[dict[str, Any]]:
    from milvus_rag.chains import source_of

    return [source_of(doc) for doc in context]


def _completion(model: str, answer: str, context: list[Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "sources": _sources(context),
    }


def _chunk(
    ident: str, model: str, delta: dict[str, Any], finish: Literal["stop"] | None = None
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _stream_completion(chain: Any, question: str, model: str) -> AsyncIterator[str]:
    """OpenAI-style SSE: a role chunk carrying ``sources``, content chunks, a stop chunk."""
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    started = False
    try:
        async for part in chain.astream(question):
            if "context" in part and not started:
                first = _chunk(ident, model, {"role": "assistant", "content": ""})
                first["sources"] = _sources(part["context"])
                started = True
                yield _sse(first)
            if part.get("answer"):
                yield _sse(_chunk(ident, model, {"content": part["answer"]}))
        yield _sse(_chunk(ident, model, {}, "stop"))
    except MilvusRAGError as exc:
        # Headers are gone: the error travels in the stream, as OpenAI's API does.
        yield _sse(_error_body(str(exc), type(exc).__name__))
    yield "data: [DONE]\n\n"
