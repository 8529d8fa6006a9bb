"""`milvus_rag.server.tools`: the MCP tools mounted at ``/mcp`` behind the key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.openai_server import FakeOpenAIServer

pytest.importorskip("mcp")
from tests.support.mcp import KEY, QUESTION


@pytest.mark.slow
def test_serve_mounts_the_tools_at_mcp_behind_the_key(
    make_settings: Any, llm: FakeOpenAIServer
) -> None:
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app
    from tests.support.corpus import store_chain_docs

    settings = make_settings(server={"api_key": KEY})
    store_chain_docs(settings)
    headers = {"Accept": "application/json, text/event-stream"}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"query": QUESTION, "k": 1}},
    }
    with TestClient(create_app(settings)) as client:
        refused = client.post("/mcp", json=listing, headers=headers)
        assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
        authorized = {**headers, "Authorization": f"Bearer {KEY}"}
        listed = client.post("/mcp", json=listing, headers=authorized)
        assert listed.status_code == 200, listed.text
        names = {tool["name"] for tool in listed.json()["result"]["tools"]}
        assert names == {"search", "ask", "list_sources"}
        found = client.post("/mcp", json=call, headers=authorized)
        assert found.status_code == 200, found.text
        result = found.json()["result"]
        assert not result.get("isError") and len(result["structuredContent"]["passages"]) == 1
