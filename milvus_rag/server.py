"""The HTTP edge: ``create_app(settings)`` serves the chains over HTTP.

A thin adapter around the chain factories (LangServe is in maintenance mode):

- ``/rag/...``: LangServe routes of :func:`~milvus_rag.chains.build_rag_chain`
  (``invoke``, ``batch``, ``stream``, ``input_schema``, ... and the playground);
  the input is a question or ``{"question", "chat_history", "citations", "system"}``;
- ``/rag-with-sources/...``: the same for
  :func:`~milvus_rag.chains.build_rag_chain_with_sources`;
- ``/retrieve/...``: retrieval only (no LLM): question -> passages
  (``text``, ``source``, ``heading``, ``score``);
- on those three, ``config.configurable`` may set ``k``, ``mode`` and ``source``
  per request (:func:`~milvus_rag.chains.configurable_retriever`); nothing else
  (endpoint, key, Milvus URI, collection) is configurable;
- ``POST /v1/chat/completions`` and ``GET /v1/models``: an OpenAI-compatible
  endpoint (plain and streamed), so any OpenAI client or ``ChatOpenAI`` can ask
  questions. The last user message is the question and earlier user/assistant
  messages its history; client system messages are appended to the tutorial's
  system message; ``temperature``, ``max_tokens`` and ``stop`` go to the answer's
  LLM call; ``usage`` sums the LLM calls when the endpoint reports it; a
  ``citations`` field asks for cited answers. Every response adds ``sources``: the
  retrieved chunks (``text``, ``source``, ``score``);
- ``GET /health``: liveness, without touching Milvus or the LLM;
- ``GET /ready``: readiness: Milvus reachable, the collection present and not
  empty, its embedding identity matching (503 otherwise); the LLM endpoint's
  reachability is reported but does not count. Each check's message (which names
  URIs) is shown to authenticated clients only;
- ``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``, with their assets
  served locally (the ``fastapi-offline`` package), so they work offline.

When ``MILVUS_RAG_SERVER__API_KEY`` is set, every route but ``/health``, ``/ready``
and ``/login`` needs the key: ``Authorization: Bearer KEY``, or the session cookie a
browser gets from ``/login`` (a form, or ``GET /login?key=KEY``): HttpOnly,
SameSite=Strict, Secure over https, a signed session that expires after
``server.session_ttl`` seconds and that ``/logout`` ends on the server
(:mod:`milvus_rag.auth`). A browser asking for a page without it is sent to
``/login``. Keys are compared in constant time; a client address that sends more than
``server.max_auth_failures`` wrong keys a minute gets 429 with ``Retry-After`` (each
failure is logged on ``milvus_rag.server``, without the key it tried).

Without the LLM's key (``llm.api_key_env`` unset), the app serves retrieval only:
``/retrieve`` works, the answer routes (``/rag``, ``/rag-with-sources``,
``/v1/chat/completions``) answer 503 naming the variable.

Every request is logged on ``milvus_rag.server.access`` (INFO): method, route,
status and latency; never headers, cookies or query strings, and the question
text only when ``server.log_questions`` is on. Retrieved documents reach clients
without the ingest bookkeeping in their metadata
(:func:`~milvus_rag.chains.client_document`), on every route and event stream.

Bodies above ``server.max_body_bytes`` and batches
above ``server.max_batch`` inputs get 413; questions above
``server.max_question_chars``, empty or not valid Unicode text get 422, on every
route before anything runs; chat histories (and client system messages) above
``server.max_history_chars`` in all, or not valid Unicode text, get 422 too; a body that
is not UTF-8 or nested too deeply gets 400. Typed errors become JSON
``{"error": {"message", "type"}}`` with an HTTP status (see :data:`STATUS_OF`). Whatever
the request, the status is one of :data:`milvus_rag.errors.HTTP_STATUSES` (a 500 is a
failure of the server itself).

No secret reaches a client or a log: error bodies, stream error events and ``/ready``
messages go through a :class:`~milvus_rag.redaction.Redactor` of the settings' secrets
(and of a chat model or retriever given to ``create_app``), and so do the records of
the package's and uvicorn's loggers while the app lives.

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
import hashlib
import hmac
import html
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import parse_qs, quote

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, Field, field_validator

from milvus_rag.auth import AuthLimiter, Sessions, SessionStore
from milvus_rag.errors import (
    ConfigError,
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
from milvus_rag.redaction import Redactor, redact_logs

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.settings import LLMSettings, ServerSettings, Settings

__all__ = ["STATUS_OF", "ChatRequest", "create_app", "status_of"]

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


_log = logging.getLogger(__name__)
#: One line per request: method, route, status, latency (and the question when asked).
access_log = logging.getLogger(f"{__name__}.access")

#: The login cookie: a signed, expiring session (:class:`milvus_rag.auth.Sessions`).
COOKIE_NAME = "milvus_rag_login"
#: Seconds /ready waits for the LLM endpoint (it only reports it).
_LLM_PROBE_TIMEOUT = 5.0


def _error_body(message: str, type_: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_}}


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request (text content only)."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        from milvus_rag.chains.history import message_text

        return message_text(self.content)


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``: ``include_usage`` adds a final usage chunk."""

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completions request milvus-rag reads.

    The question is the last ``user`` message; the ``user`` and ``assistant``
    messages before it are its chat history (a follow-up is rewritten into a
    standalone question before retrieval); ``system`` (and ``developer``)
    messages are appended to the tutorial's system message. ``temperature``,
    ``max_tokens`` (or ``max_completion_tokens``) and ``stop`` apply to the
    answer's LLM call; ``citations`` asks for a cited answer (default
    ``answer.citations``).
    """

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    citations: bool | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("stop takes at most 4 sequences")
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # it would fail the LLM request's encoding (a 500)
                raise ValueError("stop sequences must be valid Unicode text") from None
        return value

    def _last_user(self) -> int | None:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                return index
        return None

    def question(self) -> str:
        """The last user message's text (empty without one)."""
        index = self._last_user()
        return self.messages[index].text() if index is not None else ""

    def history(self) -> list[dict[str, str]]:
        """The user and assistant messages before the question, oldest first."""
        index = self._last_user() or 0
        return [
            {"role": m.role, "content": m.text()}
            for m in self.messages[:index]
            if m.role in ("user", "assistant")
        ]

    def system(self) -> str | None:
        """The client's system (and developer) messages, joined; None without any."""
        texts = [m.text().strip() for m in self.messages if m.role in ("system", "developer")]
        return "\n".join(t for t in texts if t) or None

    def chain_input(self) -> dict[str, Any]:
        """The chains' input: question, chat history, citations, system."""
        return {
            "question": self.question(),
            "chat_history": self.history(),
            "citations": self.citations,
            "system": self.system(),
        }

    def llm_options(self) -> dict[str, Any]:
        """What to bind on the answer's chat model for this request."""
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        max_tokens = self.max_tokens or self.max_completion_tokens
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if self.stop:
            options["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if self.stream and self.stream_options is not None and self.stream_options.include_usage:
            options["stream_usage"] = True
        return options


def create_app(
    settings: Settings,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
    sessions: SessionStore | None = None,
    clock: Callable[[], float] | None = None,
) -> FastAPI:
    """Build the FastAPI app serving the chains built from ``settings``.

    Building it touches no network and loads no model (the store opens and the
    model loads on the first question). ``retriever`` and ``llm`` replace the
    configured ones, e.g. to serve another LangChain retriever. ``sessions`` is
    where login sessions are signed and revoked: give every process serving the same
    port the same one (:meth:`SessionStore.shared`; ``serve --workers`` does); by
    default a new one, for this app alone. ``clock`` (seconds, default the system's)
    is what session expiry and the failed-key limit read.

    Without the LLM's key the app serves retrieval only; ``app.state.llm_missing``
    then holds the :class:`MissingAPIKeyError` the answer routes answer with (503).

    Raises:
        ConfigError: the ``server`` extra (FastAPI, LangServe) is not installed.
    """
    try:
        from fastapi import APIRouter, Depends, FastAPI
        from fastapi.responses import JSONResponse
        from langserve import add_routes
    except ImportError as exc:
        raise ConfigError(
            f"serving needs the server extra ({exc.name} is missing): "
            "pip install 'milvus-rag[server]'"
        ) from exc

    from milvus_rag.chains import (
        build_rag_chain,
        build_rag_chain_with_sources,
        build_retrieval_chain,
        configurable_retriever,
    )

    llm_missing: MissingAPIKeyError | None = None
    custom_llm = llm is not None
    if llm is None:
        from milvus_rag.llm import chat_model_from_settings

        # The model keeps one connection pool per event loop (the app's); it is closed at
        # shutdown. Without its key, the app serves retrieval only.
        try:
            llm = chat_model_from_settings(settings)
        except MissingAPIKeyError as exc:
            llm_missing = MissingAPIKeyError(
                f"{exc}; until then this server answers retrieval only (/retrieve)"
            )
    if retriever is None:
        from milvus_rag.retriever import MilvusRAGRetriever

        retriever = MilvusRAGRetriever.from_settings(settings)
    # Per request: k, mode and source (LangServe's config.configurable), nothing else;
    # documents as clients may see them.
    scoped = _for_clients(configurable_retriever(retriever))
    retrieve_chain = build_retrieval_chain(retriever=scoped)
    limits = settings.server
    max_k = settings.retrieval.max_k
    # Every secret this app knows: the settings', and those of a model or retriever given.
    redactor = Redactor.from_settings(settings, llm, retriever)
    unfilter_logs = redact_logs(redactor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        unfilter_logs()
        close = getattr(llm, "aclose", None)
        if close is not None:
            await close()

    app = FastAPI(
        title="milvus-rag",
        description="Answers questions over your documents (Milvus + an OpenAI-compatible LLM).",
        lifespan=lifespan,
        # Served below, behind the key, with local assets.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.llm_missing = llm_missing
    _install_error_handlers(app, redactor)
    _install_body_limit(app, limits.max_body_bytes)
    app.add_middleware(_AccessLog, log_questions=limits.log_questions)  # outermost: sees 413s
    key = (
        _Key(limits.api_key.get_secret_value(), limits, sessions or SessionStore(), clock)
        if limits.api_key
        else None
    )
    auth = [Depends(_key_auth(key))]

    def llm_off() -> NoReturn:
        assert llm_missing is not None
        raise llm_missing

    langserve = APIRouter(route_class=_langserve_route_class(redactor))

    def checks(chain: Any) -> list[Any]:
        return [*auth, Depends(_langserve_limits(limits, max_k, chain.input_schema))]

    sources_chain: Runnable[Any, Any] | None = None
    if llm is not None:
        answer_chain = build_rag_chain(settings, retriever=scoped, llm=llm)
        sources_chain = build_rag_chain_with_sources(settings, retriever=scoped, llm=llm)
        for path, chain in (("/rag", answer_chain), ("/rag-with-sources", sources_chain)):
            add_routes(
                langserve,
                chain,
                path=path,
                dependencies=checks(chain),
                per_req_config_modifier=_watch_llm,
                # The /c/{config_hash}/... variants would carry configuration past the checks.
                disabled_endpoints=["config_hashes"],
            )
    else:
        for path in ("/rag", "/rag-with-sources"):
            langserve.api_route(
                f"{path}/{{rest:path}}",
                methods=["GET", "HEAD", "POST"],
                dependencies=auth,
                include_in_schema=False,
                response_model=None,
            )(llm_off)
    add_routes(
        langserve,
        retrieve_chain,
        path="/retrieve",
        dependencies=checks(retrieve_chain),
        disabled_endpoints=["config_hashes"],
    )
    app.include_router(langserve)
    _install_login(app, key, "/rag/playground/" if llm is not None else "/retrieve/playground/")
    _install_docs(app, auth)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def ready(request: Request) -> Response:
        found = await asyncio.gather(
            asyncio.to_thread(_milvus_checks, settings, retriever),
            _llm_check(settings.llm, llm_missing, custom_llm),
        )
        results = {**found[0], "llm": found[1]}
        is_ready = all(check["ok"] for check in results.values() if check["required"])
        # Messages name URIs and paths. A wrong key counts as a failure here too.
        shown = key is None or key.verify(request)[0] == "ok"
        body = {
            "ready": is_ready,
            "checks": {
                name: check if shown else {k: v for k, v in check.items() if k != "message"}
                for name, check in results.items()
            },
        }
        return JSONResponse(redactor.redact_data(body), status_code=200 if is_ready else 503)

    app.get("/ready", response_model=None)(_with_request(ready))

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": limits.model_name, "object": "model", "owned_by": "milvus-rag"}],
        }

    async def chat_completions(request: Request, body: ChatRequest) -> Any:
        if llm is None or sources_chain is None:
            llm_off()
        inputs = body.chain_input()
        request.state.questions = [inputs["question"]]
        _check_question(inputs["question"], limits.max_question_chars)
        _check_history([m["content"] for m in inputs["chat_history"]], inputs["system"], limits)
        options = body.llm_options()
        chain = sources_chain
        if options:  # bound for this request only; the rewrite call keeps the defaults
            chain = build_rag_chain_with_sources(
                settings, retriever=scoped, llm=llm.bind(**options), condense_llm=llm
            )
        usage = _Usage()
        config: Any = {"callbacks": [usage]}
        if body.stream:
            from fastapi.responses import StreamingResponse

            with_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = _completion_chunks(
                chain, inputs, config, limits.model_name, usage if with_usage else None
            )
            first = await anext(chunks)  # retrieval and the LLM's first token: errors get a status
            return StreamingResponse(
                _completion_stream(first, chunks, redactor), media_type="text/event-stream"
            )
        result = await chain.ainvoke(inputs, config)
        completion = _completion(
            limits.model_name, result["answer"], result["context"], usage.total()
        )
        return redactor.redact_data(completion, credentials=False)

    app.post("/v1/chat/completions", dependencies=auth, response_model=None)(
        _with_request(chat_completions)
    )
    return app


def _with_request(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with its ``request`` parameter typed for FastAPI, which resolves
    postponed annotations in this module's globals (where ``Request`` is not imported)."""
    from fastapi import Request

    endpoint.__annotations__["request"] = Request
    return endpoint


def _for_clients(retriever: Runnable[Any, Any]) -> Runnable[Any, list[Document]]:
    """``retriever`` whose documents carry only what clients may see
    (:func:`~milvus_rag.chains.client_document`).

    The inner retriever runs without the request's callbacks, so no event stream
    (``stream_log``, ``stream_events``) shows its documents before they are
    filtered; its configurable fields (``k``, ``mode``, ``source``) still apply.
    """
    from langchain_core.runnables import RunnableLambda

    from milvus_rag.chains import client_document

    def bare(config: RunnableConfig) -> RunnableConfig:
        # An explicit empty list: None would inherit the request's callbacks from the
        # context LangChain runs this function in.
        return {"configurable": dict(config.get("configurable") or {}), "callbacks": []}

    def fetch(query: Any, config: RunnableConfig) -> list[Document]:
        return [client_document(doc) for doc in retriever.invoke(query, bare(config))]

    async def afetch(query: Any, config: RunnableConfig) -> list[Document]:
        return [client_document(doc) for doc in await retriever.ainvoke(query, bare(config))]

    # RunnableLambda exposes the configurable fields of the runnables its function uses;
    # the types are given as classes (the annotations above are postponed strings).
    return RunnableLambda(fetch, afunc=afetch, name="retriever").with_types(
        input_type=str, output_type=list[Document]
    )


class _Refused(Exception):
    """A request the edge refuses before anything runs (a bad question, too many inputs)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_text(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(
            f"{what} is not valid Unicode text (a lone surrogate at character {exc.start}); "
            "send UTF-8 text"
        ) from None


def _check_history(texts: list[str], system: str | None, limits: ServerSettings) -> None:
    """The chat history and client system text: valid Unicode, at most max_history_chars."""
    _check_texts(
        "chat history and system messages",
        [*texts, system or ""],
        limits.max_history_chars,
        "server.max_history_chars",
    )


def _check_texts(what: str, texts: list[str], limit: int, setting: str) -> None:
    """At most ``limit`` characters in all, each text valid Unicode."""
    size = sum(len(text) for text in texts)
    if size > limit:
        raise _Refused(
            f"{what} are {size} characters; the server accepts at most {limit} ({setting})"
        )
    for text in texts:
        _check_text(f"one of the {what}", text)


def _check_question(question: str, limit: int) -> None:
    if not question.strip():
        raise _Refused("the request holds no question (no user message with text)")
    if len(question) > limit:
        raise _Refused(
            f"question is {len(question)} characters; the server accepts at most {limit} "
            "(server.max_question_chars)"
        )
    _check_text("question", question)


def _check_input(value: Any, limits: ServerSettings) -> None:
    """One LangServe input: a question string or a mapping with history and system text."""
    if not isinstance(value, dict):
        if isinstance(value, str):
            _check_question(value, limits.max_question_chars)
        return
    question = value.get("question")
    if isinstance(question, str):
        _check_question(question, limits.max_question_chars)
    history, system = value.get("chat_history"), value.get("system")
    if history is None and system is None:
        return
    from milvus_rag.chains.history import message_text, messages_from

    try:
        texts = [message_text(m.content) for m in messages_from(history)]
    except (TypeError, ValueError) as exc:
        raise _Refused(str(exc)) from None
    if system is not None and not isinstance(system, str):
        raise _Refused("system must be a string")
    _check_history(texts, system, limits)


def _check_configurable(config: Any, limits: ServerSettings, max_k: int) -> None:
    """``config.configurable``: only k (1..max_k), mode (dense, hybrid) and source (globs)."""
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict):
        return
    k, mode, source = (configurable.get(key) for key in ("k", "mode", "source"))
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k):
        raise _Refused(f"k must be a whole number from 1 to {max_k} (retrieval.max_k)")
    if mode is not None and mode not in ("dense", "hybrid"):
        raise _Refused("mode must be dense or hybrid")
    if source is not None:
        if not isinstance(source, list) or not all(isinstance(p, str) and p for p in source):
            raise _Refused("source must be a list of path prefixes or globs")
        _check_texts(
            "source patterns", source, limits.max_question_chars, "server.max_question_chars"
        )


#: LangServe endpoints that run the chain, by the last part of their path.
_RUN_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_log", "stream_events"})


def _langserve_limits(
    limits: ServerSettings, max_k: int, input_schema: type[BaseModel]
) -> Callable[..., Awaitable[None]]:
    """A dependency checking LangServe requests before any run: inputs (questions,
    histories), the batch size, the per-request configuration, and what LangServe itself
    lets escape as a 500 (a body that is not UTF-8 or nested too deeply, ``"config": null``,
    a batch's invalid input)."""
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
        except json.JSONDecodeError:
            return  # LangServe answers malformed bodies itself (422)
        except ValueError:  # Python's limit on integer digits: LangServe would answer 500
            raise _Refused(
                f"the JSON body holds an integer of more than {sys.get_int_max_str_digits()} digits"
            ) from None
        if not isinstance(body, dict):
            return
        if "config" in body and body["config"] is None:  # LangServe: a TypeError, a 500
            raise _Refused('"config" must be an object, or left out')
        inputs = body.get("inputs") if endpoint == "batch" else [body.get("input")]
        if not isinstance(inputs, list):  # LangServe would iterate a string's characters
            raise _Refused('"inputs" must be a list of questions')
        request.state.questions = [_question_of(value) for value in inputs]
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
            _check_input(value, limits)
        configs = body.get("config")
        for config in configs if isinstance(configs, list) else [configs]:
            _check_configurable(config, limits, max_k)

    check.__annotations__["request"] = Request  # FastAPI resolves names in module globals only
    return check


def _question_of(value: Any) -> Any:
    """The question of one LangServe input (a string, or a mapping holding one)."""
    return value.get("question") if isinstance(value, dict) else value


def _rewriting(tags: list[str] | None) -> bool:
    from milvus_rag.chains import CONDENSE_TAG

    return CONDENSE_TAG in (tags or [])


class _LLMStarted(AsyncCallbackHandler):
    """Sets :attr:`started` once the chat model has produced its first answer token (or
    answered); the question-rewrite call does not count."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def on_llm_new_token(
        self, *args: Any, tags: list[str] | None = None, **kwargs: Any
    ) -> None:
        if not _rewriting(tags):
            self.started.set()

    async def on_llm_end(self, *args: Any, tags: list[str] | None = None, **kwargs: Any) -> None:
        if not _rewriting(tags):
            self.started.set()


class _Usage(AsyncCallbackHandler):
    """Sums the token usage the endpoint reports over every LLM call of one request
    (the question rewrite and the answer)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.calls = 0
        self.reported = 0

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.calls += 1
        found = False
        for generations in response.generations:
            for generation in generations:
                meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
                if meta:
                    self.prompt += int(meta.get("input_tokens") or 0)
                    self.completion += int(meta.get("output_tokens") or 0)
                    found = True
        if not found:  # some integrations report it in llm_output only
            token_usage = (response.llm_output or {}).get("token_usage") or {}
            if token_usage:
                self.prompt += int(token_usage.get("prompt_tokens") or 0)
                self.completion += int(token_usage.get("completion_tokens") or 0)
                found = True
        self.reported += found

    def total(self) -> dict[str, int] | None:
        """OpenAI's ``usage`` object; None unless every call reported its usage."""
        if not self.calls or self.reported < self.calls:
            return None
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        }


def _watch_llm(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """LangServe's per-request hook: note on the request when the LLM starts answering."""
    watcher = _LLMStarted()
    request.state.llm_started = watcher.started
    return {**config, "callbacks": [*(config.get("callbacks") or []), watcher]}


def _langserve_route_class(redactor: Redactor) -> type[Any]:
    """FastAPI routes whose LangServe event streams start only once the LLM answers (their
    error events with secrets masked), and whose playground pages get schemas the
    playground can render."""
    from fastapi.routing import APIRoute
    from sse_starlette import EventSourceResponse

    class LangServeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            playground = "/playground/" in self.path

            async def route(request: Request) -> Response:
                if playground:
                    response = await _playground_file(handler, request)
                    if response.media_type == "text/html":
                        return _playground_page(response)
                    return response
                response = await handler(request)
                if isinstance(response, EventSourceResponse):
                    started = getattr(request.state, "llm_started", None)
                    response.body_iterator = await _started(
                        _redacted_events(response.body_iterator, redactor), started, redactor
                    )
                    return response
                return _redacted_body(response, redactor)

            return route

    return LangServeRoute


#: The lines of LangServe's playground page that hand it the runnable's JSON schemas.
_PLAYGROUND_SCHEMA = re.compile(r"^(\s*window\.[A-Z_]+_SCHEMA = )(.*);$", re.MULTILINE)


def _playground_page(response: Response) -> Response:
    """The playground page with optional fields as plain ones: its form library stops at
    pydantic's ``anyOf: [..., {"type": "null"}]`` (a blank page)."""
    from fastapi.responses import HTMLResponse

    def simpler(match: re.Match[str]) -> str:
        try:
            schema = json.loads(match.group(2))
        except ValueError:
            return match.group(0)
        return f"{match.group(1)}{json.dumps(_without_null(schema))};"

    page = bytes(response.body).decode("utf-8")
    return HTMLResponse(_PLAYGROUND_SCHEMA.sub(simpler, page), status_code=response.status_code)


def _without_null(schema: Any) -> Any:
    """A JSON schema whose ``anyOf: [X, {"type": "null"}]`` are ``X`` (null defaults dropped)."""
    if isinstance(schema, list):
        return [_without_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _without_null(value) for key, value in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1 and isinstance(kept[0], dict):
            del out["anyOf"]
            out = {**kept[0], **out}
        elif len(kept) < len(options):
            out["anyOf"] = kept
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


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


async def _started(
    events: Any, started: asyncio.Event | None, redactor: Redactor
) -> AsyncIterator[Any]:
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
    return _resumed(held, events, redactor)


async def _resumed(
    held: list[Any], events: AsyncIterator[Any], redactor: Redactor
) -> AsyncIterator[Any]:
    for event in held:
        yield event
    async for event in events:
        if _is_error(event):
            yield _error_event(await _raised(events), event, redactor)
            return
        yield event


async def _redacted_events(events: Any, redactor: Redactor) -> AsyncIterator[Any]:
    """LangServe's events with every known secret masked in their data (run metadata may
    name the endpoint, and so on); error events pass as they are (see :func:`_resumed`)."""
    async for event in events:
        if isinstance(event, dict) and isinstance(event.get("data"), str) and not _is_error(event):
            event = {**event, "data": redactor.redact(event["data"], credentials=False)}
        yield event


def _redacted_body(response: Response, redactor: Redactor) -> Response:
    """``response`` with every known secret masked in its body (a LangServe JSON answer)."""
    from fastapi.responses import Response as Plain

    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body:
        return response
    text = body.decode("utf-8", "replace")
    masked = redactor.redact(text, credentials=False)
    if masked == text:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Plain(masked, response.status_code, headers, response.media_type)


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


def _error_event(
    error: Exception | None, generic: dict[str, Any], redactor: Redactor
) -> dict[str, Any]:
    if isinstance(error, MilvusRAGError):
        data = {"status_code": status_of(error), "message": redactor.redact(error)}
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


def _install_error_handlers(app: FastAPI, redactor: Redactor) -> None:
    """JSON error bodies, every one with its secrets masked by ``redactor``."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MilvusRAGError)
        return _json_error(_error_body(redactor.redact(exc), type(exc).__name__), status_of(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return _json_error(_error_body(redactor.redact(exc), "invalid_request_error"), exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        body = _error_body(redactor.redact(exc.detail), "invalid_request_error")
        return _json_error(body, exc.status_code, dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's own handler, except that a non-UTF-8 body echoed as "input" is no 500.
        assert isinstance(exc, RequestValidationError)
        text = {bytes: lambda raw: raw.decode("utf-8", "replace")}
        detail = jsonable_encoder(exc.errors(), custom_encoder=text)
        return _json_error({"detail": redactor.redact_data(detail)}, 422)

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


class _Key:
    """The server's API key: checks a bearer key (in constant time) or a session cookie,
    counting wrong keys per client address (:class:`~milvus_rag.auth.AuthLimiter`)."""

    def __init__(
        self,
        key: str,
        limits: ServerSettings,
        store: SessionStore,
        clock: Callable[[], float] | None,
    ) -> None:
        self._digest = hashlib.sha256(key.encode()).digest()
        self.ttl = limits.session_ttl
        self.sessions = Sessions(store, key, limits.session_ttl, clock or time.time)
        self.limiter = AuthLimiter(limits.max_auth_failures, clock or time.monotonic)

    def matches(self, given: str) -> bool:
        """Whether ``given`` is the key (comparing digests: no length or prefix leaks)."""
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest)

    def attempt(self, request: Request, given: str) -> tuple[_Verdict, int]:
        """Check a key a client sent: ``("ok" | "wrong" | "throttled", seconds to wait)``.

        A throttled client's key is not checked at all (it could be guessing still).
        """
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.wait(client)
        if wait:
            return "throttled", wait
        if self.matches(given):
            return "ok", 0
        left = self.limiter.failed(client)
        where = f"{request.method} {_loggable(request.url.path)}"
        _log.warning(
            "failed authentication from %s on %s: wrong API key%s",
            client,
            where,
            "" if left else "; its next attempts get 429 for a while (server.max_auth_failures)",
        )
        return "wrong", 0

    def verify(self, request: Request) -> tuple[_Verdict, int]:
        """Whether ``request`` is let in: a valid session cookie, else its bearer key
        (``"missing"`` without either)."""
        if self.sessions.valid(request.cookies.get(COOKIE_NAME, "")):
            return "ok", 0
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return "missing", 0
        return self.attempt(request, given.strip())


_Verdict = Literal["ok", "missing", "wrong", "throttled"]


def _throttled(wait: int) -> Exception:
    from fastapi import HTTPException

    return HTTPException(
        status_code=429,
        detail=f"too many wrong API keys from this address: try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


class _LoginNeeded(Exception):
    """A browser asked for a page without the key: send it to the login form."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _key_auth(key: _Key | None) -> Callable[..., Awaitable[None]]:
    """The dependency guarding every route but /health, /ready and /login."""
    from fastapi import Depends, HTTPException, Request
    from fastapi.security import HTTPBearer

    # Declared for the OpenAPI schema (Swagger's "Authorize"); the check reads the request.
    scheme = HTTPBearer(auto_error=False, description="MILVUS_RAG_SERVER__API_KEY")

    async def check(request: Request, credentials: Any = Depends(scheme)) -> None:
        if key is None:
            return
        verdict, wait = key.verify(request)
        if verdict == "ok":
            return
        if verdict == "throttled":
            raise _throttled(wait)
        wants_page = "text/html" in request.headers.get("accept", "")
        if request.method in ("GET", "HEAD") and wants_page:
            raise _LoginNeeded(request.url.path)
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send Authorization: Bearer <key> "
            "(browsers: sign in at /login)",
            headers={"WWW-Authenticate": "Bearer"},
        )

    check.__annotations__["request"] = Request  # FastAPI resolves names in module globals only
    return check


def _safe_next(value: str | None, default: str) -> str:
    """A local path to go to after login (never another site: ``//host``, ``/\\host``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    return value if value.isprintable() else default


_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>milvus-rag: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>milvus-rag</h1><p>{message}</p>
<form method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<label>API key <input type="password" name="key" autocomplete="current-password" autofocus
required></label> <button type="submit">Sign in</button>
</form></body></html>
"""


def _install_login(app: FastAPI, key: _Key | None, default_next: str) -> None:
    """``/login`` (a form; ``GET /login?key=KEY`` too) opens a session (a new cookie);
    ``/logout`` ends it on the server and clears the cookie."""
    from fastapi.responses import HTMLResponse, RedirectResponse

    def page(
        request: Request,
        next_path: str,
        message: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        root = request.scope.get("root_path", "")
        text = _LOGIN_PAGE.format(
            message=html.escape(message),
            action=html.escape(f"{root}/login"),
            next=html.escape(next_path),
        )
        return HTMLResponse(text, status_code=status, headers=headers)

    def signed_in(request: Request, next_path: str) -> Response:
        root = request.scope.get("root_path", "")
        response = RedirectResponse(root + next_path, status_code=303)
        if key is not None:
            response.set_cookie(
                COOKIE_NAME,
                key.sessions.issue(),
                max_age=key.ttl,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path=root or "/",
            )
        return response

    def attempt(request: Request, given: str | None, next_value: str | None) -> Response:
        next_path = _safe_next(next_value, default_next)
        if key is None:
            return signed_in(request, next_path)  # nothing to sign in to
        if given is None:
            return page(request, next_path, "Sign in with the server's API key.")
        verdict, wait = key.attempt(request, given)
        if verdict == "throttled":
            message = f"Too many wrong keys from this address: try again in {wait} s."
            return page(request, next_path, message, 429, {"Retry-After": str(wait)})
        if verdict != "ok":
            return page(request, next_path, "That is not the server's API key.", 401)
        return signed_in(request, next_path)

    async def login_page(request: Request) -> Response:
        query = request.query_params
        return attempt(request, query.get("key"), query.get("next"))

    async def login_form(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = form.get("key", [""])[0]
        return attempt(request, given, form.get("next", [None])[0])

    async def logout(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        if key is not None:  # ended here, for every worker: a copy of the cookie is no use
            key.sessions.revoke(request.cookies.get(COOKIE_NAME, ""))
        response = RedirectResponse(f"{root}/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=root or "/", httponly=True, samesite="strict")
        return response

    app.get("/login", include_in_schema=False)(_with_request(login_page))
    app.post("/login", include_in_schema=False)(_with_request(login_form))
    app.get("/logout", include_in_schema=False)(_with_request(logout))

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _LoginNeeded)
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/login?next={quote(exc.path)}", status_code=303)

    app.add_exception_handler(_LoginNeeded, to_login)


def _install_docs(app: FastAPI, auth: list[Any]) -> None:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc`` behind the key, their
    scripts served from the ``fastapi-offline`` package (no CDN); without it, only
    ``/openapi.json``."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import JSONResponse

    async def openapi() -> Response:
        return JSONResponse(app.openapi())

    app.get("/openapi.json", include_in_schema=False, dependencies=auth)(openapi)
    try:
        import fastapi_offline
    except ImportError:
        return
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    async def swagger(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="milvus-rag: API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no call to an online validator
        )

    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title="milvus-rag: API",
            redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
            redoc_favicon_url=f"{root}/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    app.get("/docs", include_in_schema=False, dependencies=auth)(_with_request(swagger))
    app.get("/redoc", include_in_schema=False, dependencies=auth)(_with_request(redoc))


class _AccessLog:
    """ASGI middleware: one :data:`access_log` line per HTTP request, once it is answered.

    Logs the method, the route's path template (the raw path when no route matched;
    never the query string), the status and the latency in milliseconds; with
    ``log_questions``, the question(s) the request asked. Headers and cookies are
    never logged.
    """

    def __init__(self, app: Any, log_questions: bool) -> None:
        self.app = app
        self.log_questions = log_questions

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._log(scope, status, (time.perf_counter() - start) * 1000)

    def _log(self, scope: Any, status: int, latency_ms: float) -> None:
        route = getattr(scope.get("route"), "path", None) or _loggable(scope.get("path", ""))
        method = scope.get("method", "")
        asked = ""
        questions = (scope.get("state") or {}).get("questions") if self.log_questions else None
        if questions:
            texts = [q for q in questions if isinstance(q, str)]
            asked = " question=" + json.dumps(texts[0] if len(texts) == 1 else texts)
        access_log.info(
            "%s %s %d %.1fms%s",
            method,
            route,
            status,
            latency_ms,
            asked,
            extra={"method": method, "route": route, "status": status, "latency_ms": latency_ms},
        )


def _loggable(text: str) -> str:
    """``text`` on one log line: control characters escaped, at most 200 characters."""
    text = text[:200]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _check(ok: bool, message: str, *, required: bool = True) -> dict[str, Any]:
    return {"ok": ok, "required": required, "message": message}


def _milvus_checks(settings: Settings, retriever: Any) -> dict[str, dict[str, Any]]:
    """Milvus reachable, the collection present and not empty, its identity matching."""
    from milvus_rag.retriever import MilvusRAGRetriever

    if not isinstance(retriever, MilvusRAGRetriever):
        return {"retriever": _check(True, f"{type(retriever).__name__}: not checked")}
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.store import connect, count_entities, ensure_collection, reason

    settings = retriever.settings or settings
    milvus, name = settings.milvus, settings.milvus.collection
    skipped = _check(False, "not checked: Milvus cannot be reached")
    checks = {"milvus": skipped, "collection": skipped, "identity": skipped}
    if milvus.is_lite and not Path(milvus.uri).expanduser().exists():  # connecting creates it
        checks["milvus"] = _check(
            False,
            f"there is no Milvus Lite database at {milvus.uri}: run `milvus-rag ingest SOURCE` "
            "first, or fix milvus.uri",
        )
        return checks
    try:
        client = connect(milvus)
    except MilvusRAGError as exc:
        checks["milvus"] = _check(False, str(exc))
        return checks
    try:
        checks["milvus"] = _check(True, f"{milvus.uri} is reachable")
        if not client.has_collection(name):
            checks["collection"] = _check(
                False, f"collection {name} does not exist: run `milvus-rag ingest SOURCE` first"
            )
            checks["identity"] = _check(False, f"not checked: no collection {name}")
            return checks
        if retriever.embeddings is None:  # the retriever's model: loaded once
            retriever.embeddings = embeddings_from_settings(settings)
        try:
            mode = None if retriever.mode == settings.retrieval.mode else retriever.mode
            ensure_collection(client, settings, retriever.embeddings, mode=mode)
            checks["identity"] = _check(True, f"collection {name} matches the embedding model")
        except MilvusRAGError as exc:
            checks["identity"] = _check(False, str(exc))
        count = count_entities(client, name)
        checks["collection"] = (
            _check(True, f"collection {name} holds {count} chunks")
            if count
            else _check(False, f"collection {name} is empty: run `milvus-rag ingest SOURCE`")
        )
    except Exception as exc:  # the server failed midway
        message = f"{milvus.uri}: {reason(exc)}"
        checks = {
            key: check if check["ok"] else _check(False, message) for key, check in checks.items()
        }
    finally:
        client.close()
    return checks


async def _llm_check(
    llm: LLMSettings, missing: MissingAPIKeyError | None, custom: bool
) -> dict[str, Any]:
    """The LLM endpoint answering ``GET /models`` (reported; not needed to be ready)."""
    if custom:
        return _check(True, "a chat model given to create_app: not checked", required=False)
    if missing is not None:
        return _check(False, str(missing), required=False)
    import asyncio

    from milvus_rag.llm import probe_endpoint

    probe = await asyncio.to_thread(probe_endpoint, llm, min(llm.timeout, _LLM_PROBE_TIMEOUT))
    return _check(probe.ok, probe.message, required=False)


def _sources(context: list[Any]) -> list[dict[str, Any]]:
    from milvus_rag.chains import source_of

    return [source_of(doc) for doc in context]


def _completion(
    model: str, answer: str, context: list[Any], usage: dict[str, int] | None
) -> dict[str, Any]:
    body = {
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
    if usage is not None:
        body["usage"] = usage
    return body


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
    chain: Any, inputs: dict[str, Any], config: Any, model: str, usage: _Usage | None
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chunks: a role chunk carrying ``sources`` (once the LLM answers), content, stop,
    then (when ``usage`` is given) a usage chunk without choices."""
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    first = _chunk(ident, model, {"role": "assistant", "content": ""})
    started = False
    async for part in chain.astream(inputs, config):
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
    if usage is not None:
        yield {**_chunk(ident, model, {}), "choices": [], "usage": usage.total()}


async def _completion_stream(
    first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], redactor: Redactor
) -> AsyncIterator[str]:
    """SSE of the chunks; a failure becomes a final ``{"error": ...}`` chunk (secrets
    masked), then ``[DONE]``."""
    yield _sse(redactor.redact_data(first, credentials=False))
    try:
        async for chunk in chunks:
            yield _sse(redactor.redact_data(chunk, credentials=False))
    except Exception as exc:
        # Headers are gone: the error travels in the stream, as OpenAI's API does.
        if isinstance(exc, MilvusRAGError):
            body = _error_body(redactor.redact(exc), type(exc).__name__)
            body["error"]["code"] = status_of(exc)
        else:
            _log.error("stream failed", exc_info=exc)  # not ours: a bug worth its traceback
            body = _error_body("internal server error", "server_error")
            body["error"]["code"] = 500
        yield _sse(body)
    yield "data: [DONE]\n\n"
