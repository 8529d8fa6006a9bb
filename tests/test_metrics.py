"""`milvus_rag.metrics`: ``GET /metrics`` (Prometheus, one registry per app)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("prometheus_client")
from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from milvus_rag.settings import Settings, load_settings
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer
from tests.support.passages import Passages
from tests.support.telemetry import BEARER, FOLLOW_UP, HISTORY, KEY, _families, _keyed, _value

QUESTION = "Where does Milvus store its segments?"


@pytest.fixture
def passages_settings(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings behind :data:`KEY` (``server`` values given), for apps over :class:`Passages`."""
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")

    def build(**server: Any) -> Settings:
        config = base_config(tmp_path / "unused.db", tiny_model_dir, llm)
        config["server"] = server
        return _keyed(load_settings(overrides=config))

    return build


# -- /metrics ---------------------------------------------------------------------------


def test_metrics_need_an_admin_key_unless_public(
    passages_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from milvus_rag.keys import KeysFile

    keys = tmp_path / "keys.yaml"
    reader = KeysFile(keys).add("reader", "reader", ["hr"])
    with TestClient(create_app(passages_settings(keys_file=keys), retriever=Passages())) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=BEARER).status_code == 200
        # Metrics count every scope's requests: not for a reader's key.
        assert c.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    public = create_app(passages_settings(metrics_public=True), retriever=Passages())
    with TestClient(public) as c:
        response = c.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "milvus_rag_requests_total" in response.text


def test_metrics_of_requests_llm_calls_and_errors(
    passages_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    app = create_app(passages_settings(), retriever=Passages())
    with TestClient(app) as c:
        chat = {"messages": [*HISTORY, {"role": "user", "content": QUESTION}]}
        assert c.post("/v1/chat/completions", json=chat, headers=BEARER).status_code == 200
        streamed = {**chat, "stream": True}
        assert c.post("/v1/chat/completions", json=streamed, headers=BEARER).status_code == 200
        body = {"input": {"question": QUESTION}}
        assert c.post("/rag/invoke", json=body, headers=BEARER).status_code == 200
        assert c.post("/rag/invoke", json=body).status_code == 401
        assert c.post(f"/nowhere/{QUESTION}", json=body, headers=BEARER).status_code == 404
        llm.script(status=429)
        assert c.post("/rag/invoke", json=body, headers=BEARER).status_code == 429
        scraped = c.get("/metrics", headers=BEARER)
    assert scraped.status_code == 200
    text = scraped.text
    assert KEY not in text
    for words in (QUESTION, FOLLOW_UP, *(m["content"] for m in HISTORY), "nowhere"):
        assert words not in text and words.replace(" ", "%20") not in text
    families = _families(text)  # the official parser reads it all

    requests = "milvus_rag_requests_total"
    chat_route = {"method": "POST", "route": "/v1/chat/completions"}
    assert _value(families, requests, **chat_route, status="200") == 2
    assert _value(families, requests, method="POST", route="/rag/invoke", status="200") == 1
    assert _value(families, requests, route="/rag/invoke", status="401") == 1
    assert _value(families, requests, route="/rag/invoke", status="429") == 1
    assert _value(families, requests, route="unmatched", status="404") == 1
    assert _value(families, "milvus_rag_request_duration_seconds_count", **chat_route) == 2
    # The history rewrite (twice) and the answers (twice on the chat route, once on /rag).
    llm_count = "milvus_rag_llm_duration_seconds_count"
    assert _value(families, llm_count, call="rewrite") == 2
    assert _value(families, llm_count, call="answer") == 4  # with the failed one
    assert _value(families, "milvus_rag_llm_time_to_first_token_seconds_count", call="answer") == 3
    tokens = "milvus_rag_llm_tokens_total"
    assert _value(families, tokens, call="answer", direction="input") > 0
    assert _value(families, tokens, call="answer", direction="output") > 0
    assert _value(families, tokens, call="rewrite", direction="output") > 0
    assert _value(families, "milvus_rag_errors_total", type="LLMRateLimitError") == 1
    for name in ("milvus_rag_retrieval_duration_seconds", "milvus_rag_ingest_files"):
        assert name in families  # declared even before anything was measured


def test_two_apps_keep_their_own_metrics(passages_settings: Callable[..., Settings]) -> None:
    settings = passages_settings()
    first, second = (create_app(settings, retriever=Passages()) for _ in range(2))
    with TestClient(first) as a, TestClient(second) as b:
        for _ in range(3):
            assert a.get("/v1/models", headers=BEARER).status_code == 200
        models = {"method": "GET", "route": "/v1/models", "status": "200"}
        seen_a = _families(a.get("/metrics", headers=BEARER).text)
        seen_b = _families(b.get("/metrics", headers=BEARER).text)
    assert _value(seen_a, "milvus_rag_requests_total", **models) == 3
    assert _value(seen_b, "milvus_rag_requests_total", **models) == 0
