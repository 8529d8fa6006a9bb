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
  served locally (the ``fastapi-offline`` package), so they work offline;
- ``GET /metrics``: Prometheus metrics of this app (:mod:`milvus_rag.metrics`), for
  admin keys (or anyone with ``server.metrics_public``); with the ``otel`` extra,
  OpenTelemetry spans of each request (:mod:`milvus_rag.telemetry`).

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

One module per concept: :mod:`~milvus_rag.server.app` (``create_app``: middleware and
routers), :mod:`~milvus_rag.server.state` (what the routes share),
:mod:`~milvus_rag.server.langserve` (the chains' LangServe routes),
:mod:`~milvus_rag.server.openai` (the OpenAI-compatible endpoint),
:mod:`~milvus_rag.server.auth` (key, sessions, login), :mod:`~milvus_rag.server.guards`
(input limits), :mod:`~milvus_rag.server.status` (errors as HTTP answers),
:mod:`~milvus_rag.server.ops` (health, readiness), :mod:`~milvus_rag.server.docs` (API
docs), :mod:`~milvus_rag.server.logs` (the access log). Every route is a module-level
function on an ``APIRouter``; it reaches the app's state through
:func:`~milvus_rag.server.state.app_state`.

Example:
    .. code-block:: python

        import uvicorn
        from milvus_rag import load_settings
        from milvus_rag.server import create_app

        uvicorn.run(create_app(load_settings()), port=8000)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from milvus_rag.server.status import STATUS_OF, status_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.auth import SessionStore
    from milvus_rag.server.openai import ChatRequest
    from milvus_rag.settings import Settings

__all__ = ["STATUS_OF", "ChatRequest", "create_app", "status_of"]

#: Names served from the submodules that import FastAPI, on first use.
_LAZY = {
    "ChatRequest": "milvus_rag.server.openai",
    "COOKIE_NAME": "milvus_rag.server.auth",
    "access_log": "milvus_rag.server.logs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_app(
    settings: Settings,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
    sessions: SessionStore | None = None,
    clock: Callable[[], float] | None = None,
    tracer_provider: Any = None,
) -> FastAPI:
    """Build the FastAPI app serving the chains built from ``settings``.

    Building it touches no network and loads no model (the store opens and the
    model loads on the first question). ``retriever`` and ``llm`` replace the
    configured ones, e.g. to serve another LangChain retriever. ``sessions`` is
    where login sessions are signed and revoked: give every process serving the same
    port the same one (:meth:`SessionStore.shared`; ``serve --workers`` does); by
    default a new one, for this app alone. ``clock`` (seconds, default the system's)
    is what session expiry and the failed-key limit read. ``tracer_provider`` (an
    OpenTelemetry ``TracerProvider``) receives the app's spans; by default one is built
    from ``settings.telemetry`` (:mod:`milvus_rag.tracing`), or none. ``GET /metrics``
    serves the app's own Prometheus metrics (:mod:`milvus_rag.metrics`).

    Without the LLM's key the app serves retrieval only; ``app.state.llm_missing``
    then holds the :class:`MissingAPIKeyError` the answer routes answer with (503).

    Raises:
        ConfigError: the ``server`` extra (FastAPI, LangServe) is not installed.
    """
    from milvus_rag.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import langserve  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"serving needs the server extra ({exc.name} is missing): "
            "pip install 'milvus-rag[server]'"
        ) from exc
    from milvus_rag.server.app import create_app as build

    return build(
        settings,
        retriever=retriever,
        llm=llm,
        sessions=sessions,
        clock=clock,
        tracer_provider=tracer_provider,
    )
