"""``/mcp``: the MCP tools (:mod:`milvus_rag.mcp`) over streamable HTTP, behind the key,
when the ``mcp`` extra is installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.routing import Route

from milvus_rag.server.auth import mcp_authorize
from milvus_rag.server.state import AppState

if TYPE_CHECKING:
    from milvus_rag.mcp import MCPEndpoint

__all__ = ["mount_mcp"]


def mount_mcp(app: FastAPI, state: AppState) -> MCPEndpoint | None:
    """Serve the app's MCP tools at ``/mcp`` (None without the ``mcp`` extra); run the
    endpoint's :meth:`~milvus_rag.mcp.MCPEndpoint.running` in the app's lifespan."""
    from milvus_rag.mcp import mcp_endpoint

    endpoint = mcp_endpoint(
        state.settings, retriever=state.retriever, llm=state.llm, authorize=mcp_authorize(state.key)
    )
    if endpoint is not None:
        app.router.routes.append(Route("/mcp", endpoint))
    return endpoint
