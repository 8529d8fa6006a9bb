"""`milvus_rag.server.guards`: body, question, batch and history limits, before any stream starts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer
from tests.support.server import CHAT, QUESTION, STREAM_ROUTES, _fill

pytestmark = pytest.mark.slow


RUN_ROUTES = [
    f"{base}/{kind}"
    for base in ("/rag", "/rag-with-sources")
    for kind in (
        "invoke",
        "stream",
        "stream_log",
        "stream_events",
    )
]


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


def test_lone_surrogate_questions_are_422(client: TestClient, llm: FakeOpenAIServer) -> None:
    bad = '"why \\ud800 here?"'  # valid JSON, but not valid Unicode text once decoded
    bodies = {path: f'{{"input": {bad}}}' for path in RUN_ROUTES}
    bodies["/rag-with-sources/invoke"] = f'{{"input": {{"question": {bad}}}}}'
    bodies["/rag/batch"] = f'{{"inputs": ["fine", {bad}]}}'
    chat = f'{{"messages": [{{"role": "user", "content": {bad}}}]}}'
    requests = [*bodies.items(), ("/v1/chat/completions", chat)]
    requests.append(("/v1/chat/completions", chat[:-1] + ', "stream": true}'))
    for path, raw in requests:
        response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert "not valid Unicode text" in response.json()["error"]["message"], path
    assert llm.chat_requests() == []


def test_limits_apply_before_streaming(client: TestClient, llm: FakeOpenAIServer) -> None:
    for path in STREAM_ROUTES:
        response = client.post(path, json={"input": "why " * 1_200})
        assert response.status_code == 422, path
        assert response.headers["content-type"] == "application/json"
        assert "max_question_chars" in response.json()["error"]["message"]
        mapping = client.post(path, json={"input": {"question": "why " * 1_200}})
        assert mapping.status_code == 422, path
    assert llm.chat_requests() == []


def test_batch_size_limit(make_settings: Callable[..., Settings], llm: FakeOpenAIServer) -> None:
    with TestClient(create_app(_fill(make_settings()))) as c:
        response = c.post("/rag/batch", json={"inputs": [QUESTION] * 200})
        assert response.status_code == 413
        assert "16" in response.json()["error"]["message"]
        assert "server.max_batch" in response.json()["error"]["message"]
        for inputs in ("x" * 200, {str(i): QUESTION for i in range(200)}, 5):
            assert c.post("/rag/batch", json={"inputs": inputs}).status_code == 422
    assert llm.chat_requests() == []
    with TestClient(create_app(_fill(make_settings(server={"max_batch": 2})))) as c:
        for path in ("/rag/batch", "/rag-with-sources/batch"):
            llm.reset()
            assert c.post(path, json={"inputs": [QUESTION] * 3}).status_code == 413, path
            assert llm.chat_requests() == []
            response = c.post(path, json={"inputs": [QUESTION, {"question": QUESTION}]})
            assert response.status_code == 200, path
            assert len(response.json()["output"]) == 2


def test_history_limits(make_settings: Callable[..., Settings], llm: FakeOpenAIServer) -> None:
    long_turns = [{"role": "user", "content": "x " * 60}, {"role": "assistant", "content": "ok"}]
    bad = '"why \\ud800 here?"'
    with TestClient(create_app(_fill(make_settings(server={"max_history_chars": 100})))) as c:
        response = c.post(
            "/v1/chat/completions", json={"messages": [*long_turns, CHAT["messages"][0]]}
        )
        assert response.status_code == 422
        assert "server.max_history_chars" in response.json()["error"]["message"]
        system = {"messages": [{"role": "system", "content": "y" * 101}, *CHAT["messages"]]}
        assert c.post("/v1/chat/completions", json=system).status_code == 422
        raw = [
            f'{{"messages": [{{"role": "assistant", "content": {bad}}}, '
            f'{{"role": "user", "content": "ok?"}}]}}',
            f'{{"messages": [{{"role": "system", "content": {bad}}}, '
            f'{{"role": "user", "content": "ok?"}}]}}',
            f'{{"input": {{"question": "ok?", "chat_history": [["user", {bad}]]}}}}',
            f'{{"input": {{"question": "ok?", "system": {bad}}}}}',
        ]
        for i, text in enumerate(raw):
            path = "/v1/chat/completions" if i < 2 else "/rag/invoke"
            response = c.post(path, content=text, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (path, response.text)
            assert "not valid Unicode text" in response.json()["error"]["message"]
        for history in ([["robot", "beep"]], "text", [{"content": "no role"}], long_turns):
            body = {"input": {"question": QUESTION, "chat_history": history}}
            for path in ("/rag/invoke", "/rag-with-sources/stream", "/rag/batch"):
                payload = {"inputs": [body["input"]]} if path.endswith("batch") else body
                assert c.post(path, json=payload).status_code == 422, (path, history)
        role = {"messages": [{"role": "wizard", "content": "x"}, *CHAT["messages"]]}
        assert c.post("/v1/chat/completions", json=role).status_code == 422
    assert llm.chat_requests() == []
