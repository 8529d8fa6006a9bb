"""``milvus-rag mcp``: the MCP server, driven by the official SDK's client and by LangChain.

The slow tests start the real command in a process of its own (stdio, and streamable
HTTP behind the API key) on a Milvus Lite file holding the chain documents, with the
local OpenAI-compatible server as the LLM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import base_config
from tests.support.corpus import CHAIN_DOCS
from tests.support.openai_server import FakeOpenAIServer

pytest.importorskip("mcp")
from tests.support.mcp import KEY, QUESTION

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mcp_config(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, llm_server: FakeOpenAIServer
) -> Path:
    """A config file whose collection holds the chain documents.

    Written by a process of its own: Milvus Lite lets one process open the file.
    """
    folder = tmp_path_factory.mktemp("mcp")
    config = base_config(folder / "milvus.db", tiny_model_dir, llm_server)
    path = folder / "mcp.yaml"
    path.write_text(yaml.safe_dump(config))
    script = (
        "import sys; from milvus_rag.settings import load_settings; "
        "from tests.support.corpus import store_chain_docs; "
        "store_chain_docs(load_settings(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, env=_env(), check=True)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_") and k != "COLUMNS"
    }
    return {**env, "TEST_LLM_KEY": "test-key", "GRPC_VERBOSITY": "NONE", **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "milvus_rag.cli", "mcp", *args]


def _text(result: Any) -> str:
    return "".join(block.text for block in result.content)


async def _check_tools(client: Any, *, with_ask: bool = True) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == (
        {"search", "ask", "list_sources"} if with_ask else {"search", "list_sources"}
    )
    search = tools["search"]
    assert search.description and "passages" in search.description
    props = search.input_schema["properties"]
    assert search.input_schema["required"] == ["query"] and {"query", "k", "source"} <= set(props)
    assert all(props[name].get("description") for name in ("query", "k", "source"))

    found = await client.call_tool("search", {"query": QUESTION, "k": 2})
    assert not found.is_error, _text(found)
    passages = json.loads(_text(found))["passages"]
    assert found.structured_content == {"passages": passages}
    assert len(passages) == 2
    assert {"text", "source", "heading", "score"} <= set(passages[0])
    assert passages[0]["source"] in {source for _, source in CHAIN_DOCS}

    narrowed = await client.call_tool("search", {"query": QUESTION, "source": ["nowhere/"]})
    assert json.loads(_text(narrowed))["passages"] == []

    for arguments, expected in (
        ({"query": "   "}, "error: the query is empty: give the text to search for"),
        ({"query": QUESTION, "k": 10_000}, "error: k must be between 1 and"),
    ):
        refused = await client.call_tool("search", arguments)
        assert refused.is_error
        message = _text(refused)
        assert message.startswith(expected) and "\n" not in message, message

    listed = await client.call_tool("list_sources", {})
    assert not listed.is_error, _text(listed)
    documents = json.loads(_text(listed))["documents"]
    assert {d["source"] for d in documents} == {source for _, source in CHAIN_DOCS}
    assert all(d["chunks"] >= 1 for d in documents)

    if with_ask:
        answered = await client.call_tool(
            "ask",
            {
                "question": "And where is it flushed?",
                "history": [
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": "In object storage."},
                ],
            },
        )
        assert not answered.is_error, _text(answered)
        body = json.loads(_text(answered))
        assert body["answer"] and body["sources"]
        assert {"text", "source", "heading", "score"} <= set(body["sources"][0])
        empty = await client.call_tool("ask", {"question": ""})
        assert empty.is_error and _text(empty).startswith("error: the question is empty")


@pytest.mark.slow
async def test_stdio_server_with_the_sdk_client(mcp_config: Path, llm: FakeOpenAIServer) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=_command("--config", str(mcp_config))[1:], env=_env()
    )
    async with Client(params) as client:
        assert client.server_info is not None and client.server_info.name == "milvus-rag"
        await _check_tools(client)
    assert llm.chat_requests()  # ask reached the LLM


@pytest.mark.slow
async def test_stdio_server_without_an_llm_key_has_no_ask(mcp_config: Path, tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    env = _env()
    del env["TEST_LLM_KEY"]
    errlog = (tmp_path / "stderr.txt").open("w+")
    params = StdioServerParameters(
        command=sys.executable, args=_command("--config", str(mcp_config))[1:], env=env
    )
    from mcp.client.stdio import stdio_client

    async with Client(stdio_client(params, errlog=errlog)) as client:
        await _check_tools(client, with_ask=False)
    errlog.seek(0)
    lines = [line for line in errlog.read().splitlines() if "ask" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "TEST_LLM_KEY" in lines[0]


@pytest.fixture(scope="module")
def http_server(mcp_config: Path) -> Iterator[str]:
    """``milvus-rag mcp --http`` behind an API key: its /mcp URL."""
    port = _free_port()
    proc = subprocess.Popen(
        _command("--http", "--port", str(port), "--config", str(mcp_config)),
        env=_env(MILVUS_RAG_SERVER__API_KEY=KEY),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
async def test_http_server_with_the_sdk_client(http_server: str, llm: FakeOpenAIServer) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(http_server, http_client=http)) as client,
    ):
        await _check_tools(client)


@pytest.mark.slow
def test_http_server_needs_the_key(http_server: str) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = httpx.post(http_server, json=hello, headers=headers, timeout=30)
        assert refused.status_code == 401
        assert "API key" in refused.json()["error"]["message"]


@pytest.mark.slow
async def test_tools_load_into_a_langchain_agent(http_server: str, llm: FakeOpenAIServer) -> None:
    import warnings

    from fastmcp.client import Client as FastMCPClient
    from fastmcp.client.transports import StreamableHttpTransport
    from langchain.agents import create_agent
    from langchain_core.messages import ToolMessage
    from langchain_openai import ChatOpenAI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain.mcp import MCPAdapter

    transport = StreamableHttpTransport(http_server, headers={"Authorization": f"Bearer {KEY}"})
    llm.script(body=_tool_call("search", {"query": QUESTION, "k": 1}))
    llm.script(answer="Milvus stores data in object storage.")
    model = ChatOpenAI(
        model="agent-model", base_url=llm.base_url, api_key="test-key", max_retries=0
    )
    async with MCPAdapter(FastMCPClient(transport)) as adapter:
        tools = await adapter.list_tools()
        assert {tool.name for tool in tools} == {"search", "ask", "list_sources"}
        agent = create_agent(model, tools)
        result = await agent.ainvoke({"messages": [{"role": "user", "content": QUESTION}]})
    messages = result["messages"]
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1 and tool_messages[0].name == "search"
    assert "passages" in str(tool_messages[0].content)
    assert messages[-1].content == "Milvus stores data in object storage."
    # The agent's model saw the tool's schema.
    first = llm.chat_requests()[0]["body"]
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "search",
        "ask",
        "list_sources",
    }


def _tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": 0,
        "model": "agent-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
