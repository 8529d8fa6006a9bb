"""``create_app(settings)``: the app, its middleware and its routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from milvus_rag.redaction import redact_logs
from milvus_rag.server import docs, documents, ops
from milvus_rag.server import openai as openai_routes
from milvus_rag.server.auth import LoginNeeded, to_login
from milvus_rag.server.auth import router as login_router
from milvus_rag.server.guards import BodyLimit
from milvus_rag.server.langserve import chain_router
from milvus_rag.server.logs import AccessLog
from milvus_rag.server.state import AppState
from milvus_rag.server.status import install_error_handlers
from milvus_rag.server.tools import mount_mcp
from milvus_rag.telemetry import TelemetryMiddleware

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.auth import SessionStore
    from milvus_rag.settings import Settings

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    retriever: BaseRetriever | None = None,
    llm: BaseChatModel | None = None,
    sessions: SessionStore | None = None,
    clock: Callable[[], float] | None = None,
    tracer_provider: Any = None,
) -> FastAPI:
    """The FastAPI app serving the chains built from ``settings`` (see
    :func:`milvus_rag.server.create_app`)."""
    state = AppState.build(settings, retriever, llm, sessions, clock, tracer_provider)
    unfilter_logs = redact_logs(state.redactor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as running:
            if mcp is not None:
                await running.enter_async_context(mcp.running())
            yield
        state.jobs.close()
        state.telemetry.close()
        unfilter_logs()
        close = getattr(state.llm, "aclose", None)
        if close is not None:
            await close()

    app = FastAPI(
        title="milvus-rag",
        description="Answers questions over your documents (Milvus + an OpenAI-compatible LLM).",
        lifespan=lifespan,
        # Served by docs.py, behind the key, with local assets.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.rag = state
    app.state.llm_missing = state.llm_missing
    install_error_handlers(app, state.redactor)
    app.add_exception_handler(LoginNeeded, to_login)
    app.add_middleware(
        BodyLimit, limit=settings.server.max_body_bytes, upload=settings.server.max_upload_bytes
    )
    # Outermost: sees the 413s too.
    app.add_middleware(AccessLog, log_questions=settings.server.log_questions)
    app.add_middleware(TelemetryMiddleware, telemetry=state.telemetry)
    app.include_router(chain_router(state))
    app.include_router(login_router)
    docs.install_docs(app)
    app.include_router(ops.router)
    app.include_router(openai_routes.router)
    app.include_router(documents.router)
    mcp = mount_mcp(app, state)
    return app
