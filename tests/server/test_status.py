"""`milvus_rag.server.status`: typed errors to HTTP statuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from milvus_rag.errors import (
    EmptyCollectionError,
    LLMRateLimitError,
    LLMTimeoutError,
    StoreUnavailableError,
)
from milvus_rag.server import create_app, status_of
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer
from tests.support.server import CHAT, QUESTION, STREAM_ROUTES

pytestmark = pytest.mark.slow


def test_llm_errors_become_statuses(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(status=401)
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "LLMAuthError" and "key" in error["message"]


def test_empty_collection_is_503(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as c:
        response = c.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 503
        assert "milvus-rag ingest" in response.json()["error"]["message"]
        streamed = c.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert streamed.status_code == 503
        for path in STREAM_ROUTES:
            response = c.post(path, json={"input": QUESTION})
            assert response.status_code == 503, path
            assert response.json()["error"]["type"] == "EmptyCollectionError"


def test_llm_answering_html_is_502(client: TestClient, llm: FakeOpenAIServer) -> None:
    for path, body in [
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
        ("/rag/invoke", {"input": QUESTION}),
        ("/rag/stream", {"input": QUESTION}),
        ("/rag-with-sources/stream", {"input": QUESTION}),
    ]:
        llm.script_html()
        response = client.post(path, json=body)
        assert response.status_code == 502, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "LLMResponseError", path
        assert llm.base_url in error["message"]
        assert "not with an OpenAI-compatible chat completion" in error["message"]


def test_status_mapping() -> None:
    assert status_of(EmptyCollectionError("x")) == 503
    assert status_of(StoreUnavailableError("x")) == 503
    assert status_of(LLMRateLimitError("x")) == 429
    assert status_of(LLMTimeoutError("x")) == 504
