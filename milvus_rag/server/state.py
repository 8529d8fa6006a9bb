"""What one app serves: its settings, retriever, chat model, chains, key and redactor.

:meth:`AppState.build` makes it once per app (``create_app``); routes reach it through
the :func:`app_state` dependency, so every route is a module-level function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableConfig

from milvus_rag.errors import ConfigError, MissingAPIKeyError
from milvus_rag.redaction import Redactor
from milvus_rag.server.auth import Gate
from milvus_rag.server.jobs import Jobs
from milvus_rag.telemetry import Telemetry

if TYPE_CHECKING:
    from collections.abc import Callable

    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.auth import SessionStore
    from milvus_rag.settings import Settings

__all__ = ["AppState", "app_state", "for_clients"]


@dataclass
class AppState:
    """Everything the routes of one app share (``app.state.rag``)."""

    settings: Settings
    #: The configured (or given) retriever: readiness checks look at it.
    retriever: BaseRetriever
    #: The retriever as clients reach it: per-request k, mode and source; client metadata.
    scoped: Runnable[Any, list[Document]]
    #: None without the LLM's key: the app serves retrieval only.
    llm: BaseChatModel | None
    llm_missing: MissingAPIKeyError | None
    #: A chat model given to ``create_app`` (not probed by ``/ready``).
    custom_llm: bool
    redactor: Redactor
    key: Gate | None
    #: The chain answering ``/v1/chat/completions`` (None without the LLM).
    sources_chain: Runnable[Any, Any] | None
    #: Upload jobs (``POST /documents``).
    jobs: Jobs
    #: The app's metrics (``GET /metrics``) and tracer (:mod:`milvus_rag.telemetry`).
    telemetry: Telemetry

    @classmethod
    def build(
        cls,
        settings: Settings,
        retriever: BaseRetriever | None,
        llm: BaseChatModel | None,
        sessions: SessionStore | None,
        clock: Callable[[], float] | None,
        tracer_provider: Any = None,
    ) -> AppState:
        """The state of an app serving ``settings`` (``retriever`` and ``llm`` replace the
        configured ones; ``tracer_provider`` receives its spans). Touches no network and
        loads no model."""
        from milvus_rag.auth import SessionStore
        from milvus_rag.chains import build_rag_chain_with_sources, configurable_retriever

        llm_missing: MissingAPIKeyError | None = None
        custom_llm = llm is not None
        if llm is None:
            from milvus_rag.llm import chat_model_from_settings

            # The model keeps one connection pool per event loop (the app's); it is closed
            # at shutdown. Without its key, the app serves retrieval only.
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
        scoped = for_clients(configurable_retriever(retriever))
        key = Gate.from_settings(settings.server, sessions or SessionStore(), clock)
        redactor = Redactor.from_settings(settings, llm, retriever)
        telemetry = Telemetry.from_settings(settings.telemetry, tracer_provider)
        return cls(
            settings=settings,
            retriever=retriever,
            scoped=scoped,
            llm=llm,
            llm_missing=llm_missing,
            custom_llm=custom_llm,
            # Every secret this app knows: the settings', and those of a model or retriever.
            redactor=redactor,
            key=key,
            sources_chain=(
                build_rag_chain_with_sources(settings, retriever=scoped, llm=llm)
                if llm is not None
                else None
            ),
            jobs=Jobs(redactor, telemetry),
            telemetry=telemetry,
        )

    def answering(self) -> tuple[BaseChatModel, Runnable[Any, Any]]:
        """The chat model and the answer-with-sources chain.

        Raises:
            MissingAPIKeyError: without the LLM's key (the answer routes answer 503).
        """
        if self.llm is None or self.sources_chain is None:
            assert self.llm_missing is not None
            raise self.llm_missing
        return self.llm, self.sources_chain


def app_state(request: Request) -> AppState:
    """The dependency giving a route its app's :class:`AppState`."""
    state: AppState = request.app.state.rag
    return state


def for_clients(retriever: Runnable[Any, Any]) -> Runnable[Any, list[Document]]:
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
        _scopes_apply(retriever)
        return [client_document(doc) for doc in retriever.invoke(query, bare(config))]

    async def afetch(query: Any, config: RunnableConfig) -> list[Document]:
        _scopes_apply(retriever)
        return [client_document(doc) for doc in await retriever.ainvoke(query, bare(config))]

    # RunnableLambda exposes the configurable fields of the runnables its function uses;
    # the types are given as classes (the annotations above are postponed strings).
    return RunnableLambda(fetch, afunc=afetch, name="retriever").with_types(
        input_type=str, output_type=list[Document]
    )


def _scopes_apply(retriever: Runnable[Any, Any]) -> None:
    """Refuse to search for a scoped key with a retriever that cannot hold it to its
    scopes (one given to ``create_app``): nothing outside them may be returned."""
    from milvus_rag.scopes import current_scopes

    if current_scopes() is None:
        return
    from milvus_rag.retriever import MilvusRAGRetriever

    inner: Any = getattr(retriever, "default", retriever)  # configurable_retriever's wrapper
    inner = getattr(inner, "base", inner)  # its per-call retriever
    if not isinstance(inner, MilvusRAGRetriever):
        raise ConfigError(
            f"keys with scopes need milvus-rag's retriever; {type(inner).__name__} cannot "
            "filter by scope"
        )
