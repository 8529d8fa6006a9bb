"""The MCP edge: the documents as Model Context Protocol tools (the ``mcp`` extra).

:func:`create_mcp_server` builds an ``MCPServer`` (the official Python SDK, ``mcp``
2.x) with three tools:

- ``search``: the passages closest to a query (``k``, a ``source`` filter), each with
  its source file, heading path and score; no LLM;
- ``ask``: an answer from the documents, with its sources (optional chat history,
  numbered citations). Absent, with one warning on ``milvus_rag.mcp``, when the LLM's
  key is not set;
- ``list_sources``: the documents in the collection, with their chunk counts.

A failure is an MCP tool error (``isError``) holding the one line the CLI prints for
it (``error: ...``, secrets masked): an empty query, a ``k`` above
``retrieval.max_k``, an unreachable Milvus or LLM.

``milvus-rag mcp`` serves it over stdio (what Claude Desktop, VS Code or Cursor start)
or, with ``--http``, over streamable HTTP at ``/mcp``; ``milvus-rag serve`` serves it
at ``/mcp`` too. Over HTTP the server's API key (``MILVUS_RAG_SERVER__API_KEY``) is
required as ``Authorization: Bearer KEY`` (:class:`MCPEndpoint`).

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.mcp import create_mcp_server

        create_mcp_server(load_settings()).run()  # stdio
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations, which
# name values of create_mcp_server (max_k) that a postponed annotation cannot see.

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from milvus_rag.errors import ConfigError, MilvusRAGError, MissingAPIKeyError
from milvus_rag.redaction import Redactor

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever
    from mcp.server.mcpserver import MCPServer
    from starlette.requests import Request
    from starlette.responses import Response

    from milvus_rag.settings import Settings

__all__ = [
    "MCPEndpoint",
    "Turn",
    "bearer_key",
    "create_mcp_server",
    "mcp_endpoint",
    "mcp_http_app",
]

_log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools over a collection of documents indexed in Milvus. Use `search` to find "
    "passages (with their source file and heading), `ask` for an answer written from "
    "the passages with its sources, `list_sources` to see which documents there are."
)


class Turn(BaseModel):
    """One earlier turn of the conversation."""

    role: Literal["user", "assistant"] = Field(..., description="Who said it.")
    content: str = Field(..., description="What was said.")


def create_mcp_server(
    settings: "Settings",
    *,
    retriever: "BaseRetriever | None" = None,
    llm: "BaseChatModel | None" = None,
    without_llm: bool = False,
) -> "MCPServer":
    """The MCP server over the collection of ``settings``.

    Building it touches no network and loads no model. ``retriever`` and ``llm``
    replace the configured ones. Without ``llm`` and without the LLM's key, the
    server has no ``ask`` tool (one warning says so; ``without_llm``: none, and no
    warning, the caller has said it).

    Raises:
        ConfigError: the ``mcp`` extra is not installed.
    """
    server_class = _server_class()
    from milvus_rag import __version__
    from milvus_rag.chains import (
        build_rag_chain_with_sources,
        build_retrieval_chain,
        configurable_retriever,
    )
    from milvus_rag.retriever import MilvusRAGRetriever

    if retriever is None:
        retriever = MilvusRAGRetriever.from_settings(settings)
    if llm is None and not without_llm:
        llm = _configured_llm(settings)
    redactor = Redactor.from_settings(settings, llm, retriever)
    inputs = _Inputs(settings.retrieval.max_k, settings.server.max_question_chars)
    scoped = configurable_retriever(retriever)
    server = server_class(
        name="milvus-rag", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    search = _search_tool(build_retrieval_chain(retriever=scoped), inputs, redactor)
    server.add_tool(search, name="search", structured_output=False)
    if llm is not None:
        answers = build_rag_chain_with_sources(settings, retriever=scoped, llm=llm)
        server.add_tool(_ask_tool(answers, inputs, redactor), name="ask", structured_output=False)
    if isinstance(retriever, MilvusRAGRetriever):
        list_sources = _list_sources_tool(retriever, redactor)
        server.add_tool(list_sources, name="list_sources", structured_output=False)
    return server


def _server_class() -> "type[MCPServer]":
    """The SDK's ``MCPServer``; ConfigError when the ``mcp`` extra is not installed."""
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError as exc:
        raise ConfigError(
            f"the MCP server needs the mcp extra ({exc.name} is missing): "
            "pip install 'milvus-rag[mcp]'"
        ) from exc
    return MCPServer


def _configured_llm(settings: "Settings") -> "BaseChatModel | None":
    """The configured chat model; None (after one warning) when its key is not set."""
    from milvus_rag.llm import chat_model_from_settings

    try:
        return chat_model_from_settings(settings)
    except MissingAPIKeyError as exc:
        _log.warning("%s; the MCP server offers search and list_sources only (no ask)", exc)
        return None


class _Inputs:
    """The checks of the tools' arguments: the server's limits on text and ``k``."""

    def __init__(self, max_k: int, max_chars: int) -> None:
        self.max_k = max_k
        self.max_chars = max_chars

    def text(self, text: str, what: str) -> str:
        """``text`` (a query, a question) when it is not blank and not too long."""
        from milvus_rag.cli._retrieval import require_question

        require_question(text, what)
        if len(text) > self.max_chars:
            raise ConfigError(
                f"the {what} is {len(text)} characters; at most {self.max_chars} are accepted "
                "(server.max_question_chars)"
            )
        return text

    def options(self, k: int | None, source: list[str] | None) -> dict[str, Any]:
        """The run config choosing ``k`` and the ``source`` filter (unset: the server's)."""
        if k is not None and not 1 <= k <= self.max_k:
            raise ConfigError(f"k must be between 1 and {self.max_k} (retrieval.max_k), got {k}")
        chosen = {"k": k, "source": [s for s in source or [] if s.strip()] or None}
        return {"configurable": {key: value for key, value in chosen.items() if value}}


def _search_tool(
    retrieve: Any, inputs: _Inputs, redactor: Redactor
) -> Callable[..., Awaitable[Any]]:
    """The ``search`` tool over the retrieval chain ``retrieve``."""
    max_k = inputs.max_k

    async def search(
        query: Annotated[str, Field(description="What to look for, in plain words.")],
        k: Annotated[
            int | None,
            Field(description=f"How many passages (1 to {max_k}; default: the server's)."),
        ] = None,
        source: Annotated[
            list[str] | None,
            Field(
                description="Only documents under these path prefixes or globs, "
                "e.g. ['en/faq/'] or ['**/*.md'] (see list_sources)."
            ),
        ] = None,
    ) -> Any:
        """Find the passages of the documents closest to a query, best first.

        Each passage has its text, its source file, its heading path and a score.
        Uses no LLM.
        """

        async def run() -> Any:
            found = await retrieve.ainvoke(inputs.text(query, "query"), inputs.options(k, source))
            return {"passages": found}

        return await _tool_result(run, redactor)

    return search


def _ask_tool(answers: Any, inputs: _Inputs, redactor: Redactor) -> Callable[..., Awaitable[Any]]:
    """The ``ask`` tool over the answer chain ``answers`` (with its sources)."""
    from milvus_rag.chains import retrieved_of

    async def ask(
        question: Annotated[str, Field(description="The question to answer.")],
        history: Annotated[
            list[Turn] | None,
            Field(
                description="Earlier turns of the conversation, oldest first; a "
                "follow-up question is first rewritten to stand on its own."
            ),
        ] = None,
        citations: Annotated[
            bool | None,
            Field(description="Cite passages as [1], [2] and end with a source list."),
        ] = None,
    ) -> Any:
        """Answer a question from the documents, with the passages it used as sources.

        The answer is written by the server's LLM from the retrieved passages only.
        """

        async def run() -> Any:
            asked = {
                "question": inputs.text(question, "question"),
                "chat_history": [turn.model_dump() for turn in history or []],
                "citations": citations,
            }
            result = await answers.ainvoke(asked)
            return {
                "answer": result["answer"],
                "sources": [retrieved_of(doc) for doc in result["context"]],
            }

        return await _tool_result(run, redactor)

    return ask


def _list_sources_tool(retriever: Any, redactor: Redactor) -> Callable[..., Awaitable[Any]]:
    """The ``list_sources`` tool over the collection of ``retriever`` (a ``MilvusRAGRetriever``)."""

    async def list_sources() -> Any:
        """List the documents in the collection: source path and number of chunks."""

        async def run() -> Any:
            return await asyncio.to_thread(_documents, retriever)

        return await _tool_result(run, redactor)

    return list_sources


def _documents(retriever: Any) -> dict[str, Any]:
    from milvus_rag.cli.sources import collection_summary, document_record
    from milvus_rag.store import list_sources

    store = retriever.store()
    client, name = store.client, store.collection_name
    info = collection_summary(client, name)
    documents = [
        {k: v for k, v in document_record(entry, info).items() if k not in ("origin", "model")}
        for entry in list_sources(client, name)
    ]
    return {"collection": name, "documents": documents}


async def _tool_result(run: Callable[[], Awaitable[Any]], redactor: Redactor) -> Any:
    """``run()``'s data as a tool result (JSON text and structured content), or its
    typed error as a tool error holding the CLI's one line."""
    from mcp.types import CallToolResult, TextContent

    try:
        data = await run()
    except MilvusRAGError as exc:
        message = " ".join(redactor.redact(exc).split())
        return CallToolResult(
            content=[TextContent(type="text", text=f"error: {message}")], is_error=True
        )
    data = redactor.redact_data(data, credentials=False)
    text = json.dumps(data, ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


Authorize = Callable[["Request"], Awaitable["Response | None"]]


class MCPEndpoint:
    """The MCP server as an ASGI endpoint (streamable HTTP, stateless, JSON responses),
    behind ``authorize`` (a response to refuse a request with, or None to let it in).

    Stateless: any worker of ``serve --workers N`` can answer any request. Run
    :meth:`running` around serving (the SDK's session manager).
    """

    def __init__(self, server: "MCPServer", authorize: "Authorize | None", host: str) -> None:
        self._server = server
        self._authorize = authorize
        self._host = host
        self._manager: Any = None

    def _new_manager(self) -> Any:
        from mcp.server.transport_security import TransportSecuritySettings

        # Without a key, a loopback host keeps the SDK's DNS-rebinding check (a web page
        # must not reach a local server through a name it controls); with one, a page
        # cannot send the key, and the Host header is whatever a proxy or container says.
        security = (
            None
            if self._authorize is None
            else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        # Builds a session manager; its handler is served, not the SDK's own app.
        self._server.streamable_http_app(
            stateless_http=True, json_response=True, host=self._host, transport_security=security
        )
        return self._server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve requests meanwhile (each run with a session manager of its own: the
        app's lifespan may run more than once)."""
        manager = self._new_manager()
        self._manager = manager
        async with manager.run():
            yield

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._authorize is not None and scope["type"] == "http":
            from starlette.requests import Request

            refusal = await self._authorize(Request(scope, receive))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        if self._manager is None:
            raise RuntimeError("the MCP endpoint serves only inside running()")
        await self._manager.handle_request(scope, receive, send)


def bearer_key(api_key: str | None) -> "Authorize | None":
    """A check of ``Authorization: Bearer KEY`` against ``api_key`` (constant time)."""
    if not api_key:
        return None
    digest = hashlib.sha256(api_key.encode()).digest()

    async def authorize(request: "Request") -> "Response | None":
        from starlette.responses import JSONResponse

        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        sent = hashlib.sha256(given.strip().encode()).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, digest):
            return None
        _log.warning("MCP request without the right API key from %s", _client(request))
        message = "missing or wrong API key: send Authorization: Bearer <key>"
        return JSONResponse(
            {"error": {"message": message, "type": "unauthorized"}},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    return authorize


def _client(request: "Request") -> str:
    return request.client.host if request.client else "unknown"


def mcp_http_app(server: "MCPServer", settings: "Settings") -> Any:
    """A Starlette app serving ``server`` at ``/mcp`` behind ``server.api_key``
    (``milvus-rag mcp --http``)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    key = settings.server.api_key
    endpoint = MCPEndpoint(
        server, bearer_key(key.get_secret_value() if key else None), settings.server.host
    )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with endpoint.running():
            yield

    return Starlette(routes=[Route("/mcp", endpoint)], lifespan=lifespan)


def mcp_endpoint(
    settings: "Settings",
    *,
    retriever: "BaseRetriever | None",
    llm: "BaseChatModel | None",
    authorize: "Authorize | None",
) -> "MCPEndpoint | None":
    """The MCP endpoint ``serve`` mounts at ``/mcp``: None without the ``mcp`` extra.

    Without ``llm`` it has no ``ask`` tool (the server has warned about the missing key).
    """
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        return None
    server = create_mcp_server(settings, retriever=retriever, llm=llm, without_llm=llm is None)
    return MCPEndpoint(server, authorize, settings.server.host)
