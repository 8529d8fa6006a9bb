"""`milvus_rag.server.langserve`: the chains' LangServe routes (invoke, stream, configurable
options, the playground, retrieval without an LLM key).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
import re

from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from tests.support.corpus import STORAGE_ANSWER
from tests.support.llm_bounds import CHAT_WITHOUT_MODEL, Passages
from tests.support.openai_server import closed_port
from tests.support.server import (
    CHAT,
    QUESTION,
    STREAM_ROUTES,
    _events,
    _fill,
    _sse_events,
)
from tests.support.server_ops import BEARER, _ready

# -- streams failing in an LLM outage leave no task behind ------------------------------


def test_streams_in_an_outage_leave_no_unretrieved_task(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream that fails is one 502 and one access-log line: no ``Task exception was
    never retrieved`` (LangChain's parallel steps used to leave two per stream)."""
    from milvus_rag.server import create_app

    down = f"http://127.0.0.1:{closed_port()}/v1"
    app = create_app(make_settings(llm={"base_url": down}), retriever=Passages())
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    requests = [
        (
            "/v1/chat/completions",
            {"messages": [*history, CHAT_WITHOUT_MODEL["messages"][0]], "stream": True},
        ),
        ("/v1/chat/completions", {**CHAT_WITHOUT_MODEL, "stream": True}),
        ("/rag/stream", {"input": {"question": QUESTION, "chat_history": history}}),
        ("/rag-with-sources/stream", {"input": {"question": QUESTION, "chat_history": history}}),
        ("/rag-with-sources/stream", {"input": QUESTION}),
    ]
    # Its own handler on each logger: other tests (the CLI, uvicorn's config) may have
    # stopped their propagation or disabled them.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [
        logging.getLogger(n) for n in ("asyncio", "milvus_rag.server", "milvus_rag.server.access")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        monkeypatch.setattr(logger, "propagate", False)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "handlers", [handler])
        logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears level caches
    try:
        _stream_in_outage(app, requests)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    assert not [r for r in records if "never retrieved" in r.getMessage()]
    assert not [r for r in records if r.levelno >= logging.ERROR]
    access = [r for r in records if r.name == "milvus_rag.server.access"]
    assert [(r.route, r.status) for r in access] == [(path, 502) for path, _ in requests]  # type: ignore[attr-defined]


def _stream_in_outage(app: Any, requests: list[tuple[str, Any]]) -> None:
    import gc

    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        for path, body in requests:
            assert client.post(path, json=body).status_code == 502
            gc.collect()  # an unretrieved task exception is reported when its task is freed
    gc.collect()


@pytest.mark.slow
def test_langserve_invoke(client: TestClient, llm: FakeOpenAIServer) -> None:
    response = client.post("/rag/invoke", json={"input": QUESTION})
    assert response.status_code == 200
    assert response.json()["output"] == llm.answer
    user = llm.chat_requests()[-1]["body"]["messages"][1]["content"]
    assert "stored in etcd" in user


@pytest.mark.slow
def test_langserve_with_sources_and_mapping_input(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    response = client.post("/rag-with-sources/invoke", json={"input": {"question": QUESTION}})
    output = response.json()["output"]
    assert output["answer"] == llm.answer
    assert output["context"][0]["metadata"]["source"] == "en/faq/product_faq.md"


@pytest.mark.slow
def test_langserve_stream(client: TestClient, llm: FakeOpenAIServer) -> None:
    response = client.post("/rag/stream", json={"input": QUESTION})
    assert response.status_code == 200
    pieces = [e for e in _events(response.text) if isinstance(e, str) and e != "[DONE]"]
    assert "".join(pieces) == llm.answer


@pytest.mark.slow
def test_llm_failure_before_the_first_byte_is_a_status(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    for path in STREAM_ROUTES:
        llm.script(status=503)
        response = client.post(path, json={"input": QUESTION})
        assert response.status_code == 502, (path, response.text)
        assert response.json()["error"]["type"] == "LLMServerError"
    llm.script(status=429)
    response = client.post("/rag/stream", json={"input": QUESTION})
    assert response.status_code == 429


@pytest.mark.slow
def test_streams_still_work_after_the_first_token(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    for path in STREAM_ROUTES:
        response = client.post(path, json={"input": QUESTION})
        assert response.status_code == 200, path
        events = _sse_events(response.text)
        assert events[-1][0] == "end", path
        assert llm.answer.split()[-1] in response.text
    sources = _sse_events(client.post("/rag-with-sources/stream", json={"input": QUESTION}).text)
    data = [json.loads(d) for e, d in sources if e == "data"]
    assert "context" in data[0]
    assert "".join(d.get("answer", "") for d in data) == llm.answer


@pytest.mark.slow
def test_citations_from_the_config(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    with TestClient(create_app(_fill(make_settings(answer={"citations": True})))) as c:
        content = c.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]
        assert "\n\nSources:\n[1] en/faq/product_faq.md" in content["content"]
        output = c.post("/rag/invoke", json={"input": QUESTION}).json()["output"]
        assert output.startswith(llm.answer + "\n\nSources:\n[1] ")
        off = {"input": {"question": QUESTION, "citations": False}}
        assert c.post("/rag/invoke", json=off).json()["output"] == llm.answer


@pytest.mark.slow
def test_langserve_takes_history(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(answer=QUESTION)
    history = [["user", "Tell me about Milvus."], ["assistant", "A vector database."]]
    body = {"input": {"question": "Where is its data?", "chat_history": history}}
    output = client.post("/rag-with-sources/invoke", json=body).json()["output"]
    assert output["answer"] == llm.answer
    assert output["context"][0]["metadata"]["source"] == "en/faq/product_faq.md"
    rewrite, _ = llm.chat_requests()
    assert "User: Tell me about Milvus." in rewrite["body"]["messages"][1]["content"]


@pytest.mark.slow
def test_langserve_configurable_k_mode_source(
    client: TestClient, llm: FakeOpenAIServer, make_settings: Callable[..., Settings]
) -> None:
    def ask(path: str, configurable: dict[str, Any]) -> httpx.Response:
        body = {"input": QUESTION, "config": {"configurable": configurable}}
        return client.post(path, json=body)

    context = ask("/rag-with-sources/invoke", {"k": 1}).json()["output"]["context"]
    assert [d["metadata"]["source"] for d in context] == ["en/faq/product_faq.md"]
    context = ask("/rag-with-sources/invoke", {"source": ["en/animals/"]}).json()["output"]
    assert [d["metadata"]["source"] for d in context["context"]] == ["en/animals/zebra.md"]
    assert "Zebras" in llm.chat_requests()[-1]["body"]["messages"][1]["content"]
    assert len(ask("/rag-with-sources/invoke", {}).json()["output"]["context"]) == 3
    assert len(ask("/rag-with-sources/invoke", {"mode": "dense"}).json()["output"]["context"]) == 3
    dense = _fill(make_settings(retrieval={"mode": "dense"}, milvus={"collection": "dense_docs"}))
    with TestClient(create_app(dense)) as on_dense:
        body = {"input": QUESTION, "config": {"configurable": {"mode": "hybrid"}}}
        response = on_dense.post("/rag-with-sources/invoke", json=body)  # a dense collection
    assert response.status_code == 409 and "--mode hybrid" in response.json()["error"]["message"]
    for bad in ({"k": 0}, {"k": 500}, {"k": "3"}, {"mode": "fuzzy"}, {"source": "en/"}):
        response = ask("/rag/invoke", bad)
        assert response.status_code == 422, (bad, response.text)
    batch = {"inputs": [QUESTION], "config": [{"configurable": {"k": 99}}]}
    assert client.post("/rag/batch", json=batch).status_code == 422
    assert client.post("/rag/c/abc/invoke", json={"input": QUESTION}).status_code == 404
    assert client.get("/rag/playground/").status_code == 200


@pytest.mark.slow
def test_only_retrieval_options_are_configurable(
    client: TestClient, llm: FakeOpenAIServer, settings: Settings
) -> None:
    schema = client.get("/rag/config_schema").json()
    assert set(schema["$defs"]["Configurable"]["properties"]) == {"k", "mode", "source"}
    evil = {
        "base_url": "http://127.0.0.1:9/v1",
        "openai_api_base": "http://127.0.0.1:9/v1",
        "api_key": "stolen",
        "model": "other",
        "uri": "/tmp/elsewhere.db",
        "collection": "other_collection",
        "settings": None,
        "base": None,
        "expr": 'source == "x"',
    }
    llm.reset()
    response = client.post(
        "/rag-with-sources/invoke", json={"input": QUESTION, "config": {"configurable": evil}}
    )
    # LangServe drops configurable keys the chain does not declare: the request runs with
    # the configured endpoint, key, model and collection.
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["answer"] == llm.answer and len(output["context"]) == 3
    request = llm.chat_requests()[-1]
    assert request["body"]["model"] == "test-model"
    assert request["headers"]["authorization"] == "Bearer test-key"


@pytest.mark.slow
def test_retrieve_route(client: TestClient, llm: FakeOpenAIServer) -> None:
    output = client.post("/retrieve/invoke", json={"input": QUESTION}).json()["output"]
    assert len(output) == 3
    assert set(output[0]) == {"text", "source", "heading", "score"}
    assert output[0]["source"] == "en/faq/product_faq.md" and STORAGE_ANSWER in output[0]["text"]
    body = {"input": {"question": QUESTION}, "config": {"configurable": {"k": 1}}}
    assert len(client.post("/retrieve/invoke", json=body).json()["output"]) == 1
    body = {"input": QUESTION, "config": {"configurable": {"source": ["en/music/"]}}}
    output = client.post("/retrieve/invoke", json=body).json()["output"]
    assert [p["source"] for p in output] == ["en/music/guitar.md"]
    assert client.post("/retrieve/invoke", json={"input": "why " * 1_200}).status_code == 422
    assert llm.chat_requests() == []  # retrieval only


@pytest.mark.slow
def test_playground_page_schemas_have_no_null_types(keyed: TestClient) -> None:
    """LangServe's playground renders a blank page on ``{"type": "null"}`` options."""
    page = keyed.get("/rag/playground/", headers=BEARER).text
    found = re.findall(r"window\.(\w+_SCHEMA) = (.*);$", page, re.MULTILINE)
    assert {name for name, _ in found} == {"CONFIG_SCHEMA", "INPUT_SCHEMA", "OUTPUT_SCHEMA"}
    for name, text in found:
        schema = json.loads(text)
        assert '{"type": "null"}' not in json.dumps(schema), name
    config = json.loads(dict(found)["CONFIG_SCHEMA"])
    assert config["$defs"]["Configurable"]["properties"]["k"]["type"] == "integer"


# -- 6. retrieval-only mode --------------------------------------------------------------
@pytest.mark.slow
def test_without_the_llm_key_only_retrieval_is_served(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, llm: FakeOpenAIServer
) -> None:
    _fill(make_settings())
    monkeypatch.delenv("TEST_LLM_KEY")
    app = create_app(make_settings())  # no longer refuses to start
    assert "TEST_LLM_KEY" in str(app.state.llm_missing)
    with TestClient(app) as client:
        output = client.post("/retrieve/invoke", json={"input": QUESTION}).json()["output"]
        assert output[0]["source"] == "en/faq/product_faq.md"
        assert client.get("/retrieve/playground/").status_code == 200
        off = [
            ("/rag/invoke", {"input": QUESTION}),
            ("/rag/stream", {"input": QUESTION}),
            ("/rag-with-sources/invoke", {"input": QUESTION}),
            ("/rag-with-sources/stream_log", {"input": QUESTION}),
            ("/v1/chat/completions", CHAT),
            ("/v1/chat/completions", {**CHAT, "stream": True}),
        ]
        for path, payload in off:
            response = client.post(path, json=payload)
            assert response.status_code == 503, path
            error = response.json()["error"]
            assert error["type"] == "MissingAPIKeyError"
            assert "TEST_LLM_KEY" in error["message"] and "llm.api_key_env" in error["message"]
        assert client.get("/rag/playground/").status_code == 503
        status, body = _ready(client)
        assert status == 200  # retrieval works
        assert (
            not body["checks"]["llm"]["ok"] and "TEST_LLM_KEY" in body["checks"]["llm"]["message"]
        )
        login = client.get("/login", follow_redirects=False)
        assert login.headers["location"] == "/retrieve/playground/"  # no key: nothing to ask
    assert llm.chat_requests() == []
