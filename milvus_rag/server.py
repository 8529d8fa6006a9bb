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
``Authorization: Bearer KEY``. Bodies above ``server.max_body_bytes`` and batches
above ``server.max_batch`` inputs get 413; questions above
``server.max_question_chars``, empty or not valid Unicode text get 422, on every
route before anything runs; a body that is not UTF-8 or nested too deeply gets 400.
Typed errors become JSON ``{"error": {"message", "type"}}`` with an HTTP status (see
:data:`STATUS_OF`). Whatever the request, the status is one of
:data:`milvus_rag.errors.HTTP_STATUSES` (a 500 is a failure of the server itself).

Streams start once the LLM has answered (its first token), so retrieval and LLM
failures still get their status and JSON body. A failure after that ends the
stream with one well-formed error event: ``event: error`` with
``{"status_code", "message"}`` on the LangServe routes, a ``{"error": ...}`` chunk
then ``[DONE]`` on the OpenAI-compatible endpoint.

Example:
    .. code-block:: python

        import uvicorn
        from milvus_rag import load_settings
        from milvus_rag.server import create_app

        uvicorn.run(create_app(load_settings()), port=8000)
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackHandler
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

    from milvus_rag.settings import ServerSettings, Settings

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


_log = logging.getLogger(__name__)


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
        from fastapi import APIRouter, Depends, FastAPI
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

    langserve = APIRouter(route_class=_langserve_route_class())
    for path, chain in (("/rag", answer_chain), ("/rag-with-sources", sources_chain)):
        add_routes(
            langserve,
            chain,
            path=path,
            dependencies=[*auth, Depends(_langserve_limits(limits, chain.input_schema))],
            per_req_config_modifier=_watch_llm,
        )
    app.include_router(langserve)

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

            chunks = _completion_chunks(sources_chain, question, limits.model_name)
            first = await anext(chunks)  # retrieval and the LLM's first token: errors get a status
            return StreamingResponse(
                _completion_stream(first, chunks), media_type="text/event-stream"
            )
        result = await sources_chain.ainvoke(question)
        return _completion(limits.model_name, result["answer"], result["context"])

    return app


class _Refused(Exception):
    """A request the edge refuses before anything runs (a bad question, too many inputs)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_question(question: str, limit: int) -> None:
    if not question.strip():
        raise _Refused("the request holds no question (no user message with text)")
    if len(question) > limit:
        raise _Refused(
            f"question is {len(question)} characters; the server accepts at most {limit} "
            "(server.max_question_chars)"
        )
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(
            f"question is not valid Unicode text (a lone surrogate at character {exc.start}); "
            "send UTF-8 text"
        ) from None


#: LangServe endpoints that run the chain, by the last part of their path.
_RUN_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_log", "stream_events"})


def _langserve_limits(
    limits: ServerSettings, input_schema: type[BaseModel]
) -> Callable[..., Awaitable[None]]:
    """A dependency checking LangServe requests before any run: questions, the batch size,
    and what LangServe itself lets escape as a 500 (a body that is not UTF-8 or nested too
    deeply, ``"config": null``, a batch's invalid input)."""
    from fastapi import Request
    from pydantic import ValidationError

    async def check(request: Request) -> None:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        if request.method != "POST" or endpoint not in _RUN_ENDPOINTS:
            return
        try:
            body = await request.json()  # cached: LangServe reads the same request
        except UnicodeDecodeError:  # LangServe only expects JSON errors (a 500)
            raise _Refused("the body is not UTF-8 text", 400) from None
        except RecursionError:
            raise _Refused("the JSON body is nested too deeply", 400) from None
        except ValueError:
            return  # LangServe answers malformed bodies itself (422)
        if not isinstance(body, dict):
            return
        if "config" in body and body["config"] is None:  # LangServe: a TypeError, a 500
            raise _Refused('"config" must be an object, or left out')
        inputs = body.get("inputs") if endpoint == "batch" else [body.get("input")]
        if not isinstance(inputs, list):  # LangServe would iterate a string's characters
            raise _Refused('"inputs" must be a list of questions')
        if len(inputs) > limits.max_batch:
            raise _Refused(
                f"batch holds {len(inputs)} inputs; the server accepts at most "
                f"{limits.max_batch} (server.max_batch)",
                413,
            )
        for index, value in enumerate(inputs):
            if endpoint == "batch":
                try:
                    input_schema.model_validate(value)
                except ValidationError as exc:
                    message = exc.errors(include_url=False)[0]["msg"]
                    raise _Refused(f"inputs[{index}] is not a valid input: {message}") from None
            question = value.get("question") if isinstance(value, dict) else value
            if isinstance(question, str):
                _check_question(question, limits.max_question_chars)

    check.__annotations__["request"] = Request  # FastAPI resolves names in module globals only
    return check


class _LLMStarted(AsyncCallbackHandler):
    """Sets :attr:`started` once the chat model has produced its first token (or answered)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self.started.set()

    async def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.started.set()


def _watch_llm(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """LangServe's per-request hook: note on the request when the LLM starts answering."""
    watcher = _LLMStarted()
    request.state.llm_started = watcher.started
    return {**config, "callbacks": [*(config.get("callbacks") or []), watcher]}


def _langserve_route_class() -> type[Any]:
    """FastAPI routes whose LangServe event streams start only once the LLM answers."""
    from fastapi.routing import APIRoute
    from sse_starlette import EventSourceResponse

    class LangServeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                if "/playground/" in self.path:
                    return await _playground_file(handler, request)
                response = await handler(request)
                if isinstance(response, EventSourceResponse):
                    started = getattr(request.state, "llm_started", None)
                    response.body_iterator = await _started(response.body_iterator, started)
                return response

            return route

    return LangServeRoute


async def _playground_file(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """A file of LangServe's playground; a path it cannot serve is a JSON 404.

    LangServe opens the requested path itself: a folder, a NUL byte or a name too
    long would escape as a 500, a missing file is a plain-text 404.
    """
    from starlette.exceptions import HTTPException

    try:
        response = await handler(request)
    except (OSError, ValueError):
        raise HTTPException(status_code=404, detail="Not Found") from None
    if response.status_code == 404:
        raise HTTPException(status_code=404, detail="Not Found")
    return response


async def _started(events: Any, started: asyncio.Event | None) -> AsyncIterator[Any]:
    """Hold LangServe's events until the LLM answers; return the whole stream.

    LangServe turns any failure into a ``500 Internal Server Error`` event, then
    re-raises (an aborted response and an ASGI traceback). A typed error before the
    stream starts is raised here (its status and JSON body); later, it becomes one
    error event with its status and message, and the stream ends cleanly.
    """
    held: list[Any] = []
    async for event in events:
        if _is_error(event):
            error = await _raised(events)
            if error is None:
                held.append(event)
                break
            raise error
        held.append(event)
        if started is None or started.is_set():
            break
    return _resumed(held, events)


async def _resumed(held: list[Any], events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for event in held:
        yield event
    async for event in events:
        if _is_error(event):
            yield _error_event(await _raised(events), event)
            return
        yield event


def _is_error(event: Any) -> bool:
    return isinstance(event, dict) and event.get("event") == "error"


async def _raised(events: AsyncIterator[Any]) -> Exception | None:
    """The exception LangServe re-raises after its error event."""
    try:
        await anext(events)
    except StopAsyncIteration:
        return None
    except Exception as exc:
        return exc
    return None


def _error_event(error: Exception | None, generic: dict[str, Any]) -> dict[str, Any]:
    if isinstance(error, MilvusRAGError):
        data = {"status_code": status_of(error), "message": str(error)}
        return {"event": "error", "data": json.dumps(data)}
    if error is not None:
        _log.error("stream failed", exc_info=error)  # not ours: a bug worth its traceback
    return generic


def _json_error(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """An error response whose JSON is ASCII: a lone surrogate echoed from the request
    (``"\\ud800"``) stays an escape instead of failing the UTF-8 encoding (a 500)."""
    from fastapi.responses import Response

    content = json.dumps(body, ensure_ascii=True).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MilvusRAGError)
        return _json_error(_error_body(str(exc), type(exc).__name__), status_of(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return _json_error(_error_body(str(exc), "invalid_request_error"), exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        body = _error_body(str(exc.detail), "invalid_request_error")
        return _json_error(body, exc.status_code, dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's own handler, except that a non-UTF-8 body echoed as "input" is no 500.
        assert isinstance(exc, RequestValidationError)
        text = {bytes: lambda raw: raw.decode("utf-8", "replace")}
        return _json_error({"detail": jsonable_encoder(exc.errors(), custom_encoder=text)}, 422)

    app.add_exception_handler(MilvusRAGError, typed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(_Refused, refused)


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


async def _completion_chunks(
    chain: Any, question: str, model: str
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chunks: a role chunk carrying ``sources`` (once the LLM answers), content, stop."""
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    first = _chunk(ident, model, {"role": "assistant", "content": ""})
    started = False
    async for part in chain.astream(question):
        if "context" in part:
            first["sources"] = _sources(part["context"])
        if part.get("answer"):
            if not started:
                started = True
                yield first
            yield _chunk(ident, model, {"content": part["answer"]})
    if not started:
        yield first
    yield _chunk(ident, model, {}, "stop")


async def _completion_stream(
    first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[str]:
    """SSE of the chunks; a failure becomes a final ``{"error": ...}`` chunk, then ``[DONE]``."""
    yield _sse(first)
    try:
        async for chunk in chunks:
            yield _sse(chunk)
    except Exception as exc:
        # Headers are gone: the error travels in the stream, as OpenAI's API does.
        if isinstance(exc, MilvusRAGError):
            body = _error_body(str(exc), type(exc).__name__)
            body["error"]["code"] = status_of(exc)
        else:
            _log.error("stream failed", exc_info=exc)  # not ours: a bug worth its traceback
            body = _error_body("internal server error", "server_error")
            body["error"]["code"] = 500
        yield _sse(body)
    yield "data: [DONE]\n\n"
