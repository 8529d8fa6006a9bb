"""The HTTP edge: LangServe routes, the OpenAI-compatible endpoint, auth, limits, errors.

The app runs on FastAPI's TestClient (real ASGI, real HTTP semantics) over Milvus Lite in
a temp dir, the tiny model and the real local OpenAI-compatible server; one test starts
``milvus-rag serve`` as a process and talks to it over loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytest.importorskip("langserve")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from milvus_rag.errors import (
    EmptyCollectionError,
    LLMRateLimitError,
    LLMTimeoutError,
    MissingAPIKeyError,
    StoreUnavailableError,
)
from milvus_rag.server import create_app, status_of
from milvus_rag.settings import Settings
from tests.support.corpus import STORAGE_ANSWER, store_chain_docs
from tests.support.openai_server import FakeOpenAIServer, closed_port

QUESTION = "Where does Milvus store data?"
CHAT = {"model": "milvus-rag", "messages": [{"role": "user", "content": QUESTION}]}


def _fill(s: Settings) -> Settings:
    store_chain_docs(s)
    return s


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return _fill(make_settings())


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def _events(text: str) -> list[Any]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_health_needs_nothing(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_langserve_invoke(client: TestClient, llm: FakeOpenAIServer) -> None:
    response = client.post("/rag/invoke", json={"input": QUESTION})
    assert response.status_code == 200
    assert response.json()["output"] == llm.answer
    user = llm.chat_requests()[-1]["body"]["messages"][1]["content"]
    assert "stored in etcd" in user


def test_langserve_with_sources_and_mapping_input(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    response = client.post("/rag-with-sources/invoke", json={"input": {"question": QUESTION}})
    output = response.json()["output"]
    assert output["answer"] == llm.answer
    assert output["context"][0]["metadata"]["source"] == "en/faq/product_faq.md"


def test_langserve_stream(client: TestClient, llm: FakeOpenAIServer) -> None:
    response = client.post("/rag/stream", json={"input": QUESTION})
    assert response.status_code == 200
    pieces = [e for e in _events(response.text) if isinstance(e, str) and e != "[DONE]"]
    assert "".join(pieces) == llm.answer


def test_models(client: TestClient) -> None:
    assert client.get("/v1/models").json()["data"][0]["id"] == "milvus-rag"


def test_chat_completions_with_sources(client: TestClient, llm: FakeOpenAIServer) -> None:
    body = client.post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": llm.answer}
    assert body["sources"][0]["source"] == "en/faq/product_faq.md"
    assert STORAGE_ANSWER in body["sources"][0]["text"]
    assert isinstance(body["sources"][0]["score"], float)


def test_chat_completions_stream(client: TestClient, llm: FakeOpenAIServer) -> None:
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    first, chunks = events[0], events[1:-1]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["sources"][0]["source"] == "en/faq/product_faq.md"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == llm.answer
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_openai_client_against_the_server(client: TestClient, llm: FakeOpenAIServer) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url="http://testserver/v1",
        api_key="unused",  # type: ignore[arg-type]
        model="milvus-rag",
        http_client=client,
        max_retries=0,
    )
    assert chat.invoke(QUESTION).content == llm.answer
    assert "".join(str(c.content) for c in chat.stream(QUESTION)) == llm.answer


def test_api_key(
    settings: Settings, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", "s3cret")
    with TestClient(create_app(make_settings())) as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = c.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert response.status_code == 401
            assert "API key" in response.json()["error"]["message"]
        assert c.post("/rag/invoke", json={"input": QUESTION}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        ok = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_body_and_question_limits(client: TestClient, llm: FakeOpenAIServer) -> None:
    huge = {"messages": [{"role": "user", "content": "x" * 100_000}]}
    response = client.post("/v1/chat/completions", json=huge)
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]["message"]
    long = {"messages": [{"role": "user", "content": "why " * 1_200}]}
    response = client.post("/v1/chat/completions", json=long)
    assert response.status_code == 422
    assert "max_question_chars" in response.json()["error"]["message"]
    assert client.post("/rag/invoke", json={"input": "why " * 1_200}).status_code == 422
    empty = {"messages": [{"role": "system", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=empty).status_code == 422
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    assert llm.chat_requests() == []  # nothing reached the LLM


def test_llm_errors_become_statuses(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(status=401)
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "LLMAuthError" and "key" in error["message"]


def test_llm_error_inside_a_stream(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(status=404)
    events = _events(client.post("/v1/chat/completions", json={**CHAT, "stream": True}).text)
    assert events[-1] == "[DONE]"
    assert any(
        isinstance(e, dict) and e.get("error", {}).get("type") == "LLMNotFoundError" for e in events
    )


def test_unreachable_llm(make_settings: Callable[..., Settings]) -> None:
    s = _fill(make_settings(llm={"base_url": f"http://127.0.0.1:{closed_port()}/v1"}))
    with TestClient(create_app(s)) as c:
        response = c.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "LLMConnectionError"


def test_empty_collection_is_503(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as c:
        response = c.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert "milvus-rag ingest" in response.json()["error"]["message"]


def test_status_mapping() -> None:
    assert status_of(EmptyCollectionError("x")) == 503
    assert status_of(StoreUnavailableError("x")) == 503
    assert status_of(LLMRateLimitError("x")) == 429
    assert status_of(LLMTimeoutError("x")) == 504


def test_missing_llm_key_fails_at_startup(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    with pytest.raises(MissingAPIKeyError, match="TEST_LLM_KEY"):
        create_app(make_settings())


def test_serve_command_end_to_end(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, faq_folder: Path
) -> None:
    from tests.conftest import base_config

    port = closed_port()
    config = base_config(tmp_path / "served.db", tiny_model_dir, llm)
    config["server"] = {"port": port}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
    env.update({"TEST_LLM_KEY": "test-key", "MILVUS_RAG_SERVER__API_KEY": "k1"})
    cli = [sys.executable, "-m", "milvus_rag.cli"]
    cfg = ["--config", str(tmp_path / "config.yaml")]
    ingest = subprocess.run(
        [*cli, "ingest", str(faq_folder), *cfg],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr
    server = subprocess.Popen(
        [*cli, "serve", *cfg], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        response = httpx.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "How is data stored in milvus?"}]},
            headers={"Authorization": "Bearer k1"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == llm.answer
        assert response.json()["sources"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_an_empty_collection(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app
    from tests.conftest import base_config

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path / "empty.db", tiny_model_dir, llm)))
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "milvus-rag ingest" in result.output
    assert "Traceback" not in result.output
