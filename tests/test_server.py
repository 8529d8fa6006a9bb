"""The HTTP edge: LangServe routes, the OpenAI-compatible endpoint, auth, limits, errors.

The app runs on FastAPI's TestClient (real ASGI, real HTTP semantics) over Milvus Lite in
a temp dir, the tiny model and the real local OpenAI-compatible server; one test starts
``milvus-rag serve`` as a process and talks to it over loopback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    StoreUnavailableError,
)
from milvus_rag.server import create_app, status_of
from milvus_rag.settings import Settings
from tests.support.corpus import STORAGE_ANSWER, store_chain_docs
from tests.support.openai_server import FakeOpenAIServer, closed_port

pytestmark = pytest.mark.slow

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


def _sse_events(text: str) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of a server-sent event stream (comments skipped)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))
        if data or event != "message":
            out.append((event, "\n".join(data)))
    return out


STREAM_ROUTES = [
    f"{base}/{kind}"
    for base in ("/rag", "/rag-with-sources")
    for kind in (
        "stream",
        "stream_log",
        "stream_events",
    )
]
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


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback in a thread; its log records reach caplog."""
    import uvicorn

    port = closed_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records carrying a traceback, but Milvus Lite's gRPC noise (see cli._common)."""
    return [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith("grpc") and (r.exc_info or "Traceback" in r.getMessage())
    ]


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
        assert c.post("/retrieve/invoke", json={"input": QUESTION}).status_code == 401
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


def test_llm_error_before_a_stream_starts(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(status=404)
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "LLMNotFoundError"


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


def test_errors_after_the_first_byte_end_the_stream_cleanly(
    settings: Settings, llm: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with _uvicorn(create_app(settings)) as base:
        for path in STREAM_ROUTES:
            llm.script(error_after=2)
            response = httpx.post(base + path, json={"input": QUESTION}, timeout=60)
            assert response.status_code == 200, path  # the LLM had started answering
            events = _sse_events(response.text)
            assert [e for e, _ in events].count("data") >= 2, path
            kind, data = events[-1]
            assert kind == "error", (path, events[-3:])
            error = json.loads(data)
            assert error["status_code"] == 502 and llm.base_url in error["message"], path

        llm.script(error_after=2)
        response = httpx.post(
            f"{base}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=60
        )
        events = _events(response.text)
        assert events[-1] == "[DONE]"
        assert events[0]["sources"] and events[1]["choices"][0]["delta"]["content"]
        error = events[-2]["error"]
        assert error["type"] == "LLMError" and error["code"] == 502
        assert llm.base_url in error["message"]
    assert _tracebacks(caplog) == []


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


def test_status_mapping() -> None:
    assert status_of(EmptyCollectionError("x")) == 503
    assert status_of(StoreUnavailableError("x")) == 503
    assert status_of(LLMRateLimitError("x")) == 429
    assert status_of(LLMTimeoutError("x")) == 504


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


@pytest.mark.parametrize(
    ("host", "key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.20", None, True),
        ("0.0.0.0", "k1", False),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
    ],
)
def test_serve_warns_when_reachable_without_a_key(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    key: str | None,
    warned: bool,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app
    from tests.conftest import base_config

    serve_command = importlib.import_module("milvus_rag.cli.serve")
    config = tmp_path / "c.yaml"  # the collection the settings fixture filled
    config.write_text(yaml.safe_dump(base_config(tmp_path / "milvus.db", tiny_model_dir, llm)))
    if key:
        monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", key)
    ran: list[tuple[Any, list[Any]]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: ran.append((self, sockets)))
    # Only the warning is under test: listen on loopback whatever the host.
    listen = serve_command._listen
    monkeypatch.setattr(serve_command, "_listen", lambda host, port: listen("127.0.0.1", 0))
    result = CliRunner().invoke(app, ["serve", "--host", host, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert ran and ran[0][0].config.host == host  # it still starts
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if warned:
        assert len(warnings) == 1
        assert "MILVUS_RAG_SERVER__API_KEY" in warnings[0] and host in warnings[0]
    else:
        assert warnings == []


# -- conversations, client options, usage, citations, per-request retrieval ----------------

FOLLOW_UP = [
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "Tell me about Milvus."},
    {"role": "assistant", "content": "Milvus is a vector database."},
    {"role": "user", "content": "Where does it keep its data?"},
]


def _words(text: str) -> int:
    return len(text.split())


def _reported_usage(request: dict[str, Any], answer: str) -> tuple[int, int]:
    """What the test server reports for one request: words in, words out."""
    prompt = sum(_words(m["content"]) for m in request["body"]["messages"])
    return prompt, _words(answer)


def test_chat_completions_use_the_whole_conversation(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    from milvus_rag.chains import CONDENSE_PROMPT, SYSTEM_MESSAGE

    llm.script(answer=QUESTION)  # the rewrite
    body = client.post("/v1/chat/completions", json={"messages": FOLLOW_UP}).json()
    assert body["choices"][0]["message"]["content"] == llm.answer
    assert body["sources"][0]["source"] == "en/faq/product_faq.md"
    rewrite, answer = llm.chat_requests()
    assert rewrite["body"]["messages"][0]["content"] == CONDENSE_PROMPT.messages[0].prompt.template
    assert rewrite["body"]["messages"][1]["content"] == (
        "Conversation:\nUser: Tell me about Milvus.\nAssistant: Milvus is a vector database."
        "\n\nLast question: Where does it keep its data?"
    )
    system, user = answer["body"]["messages"]
    assert system["content"] == SYSTEM_MESSAGE + "\nAnswer in French."  # appended
    assert user["content"].endswith(f"<question>\n{QUESTION}\n</question>")
    assert "stored in etcd" in user["content"]
    # usage: the rewrite call plus the answer call, as the endpoint reported them
    first, second = _reported_usage(rewrite, QUESTION), _reported_usage(answer, llm.answer)
    prompt, completion = first[0] + second[0], first[1] + second[1]
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_single_turn_chat_costs_one_call(client: TestClient, llm: FakeOpenAIServer) -> None:
    body = client.post("/v1/chat/completions", json=CHAT).json()
    (request,) = llm.chat_requests()
    prompt, completion = _reported_usage(request, llm.answer)
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["completion_tokens"] == completion


def test_client_options_reach_the_answer_call_only(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    options = {"temperature": 0.25, "max_tokens": 7, "stop": ["\n\n", "END"]}
    llm.script(answer=QUESTION)
    client.post("/v1/chat/completions", json={"messages": FOLLOW_UP, **options})
    rewrite, answer = (r["body"] for r in llm.chat_requests())
    assert answer["temperature"] == 0.25
    assert answer["max_completion_tokens"] == 7  # ChatOpenAI's name for max_tokens
    assert answer["stop"] == ["\n\n", "END"]
    assert not {"temperature", "max_tokens", "stop"} & set(rewrite)
    assert rewrite["max_completion_tokens"] == 4000  # its own cap: server.max_question_chars

    llm.reset()  # nothing stays bound for the next request
    client.post("/v1/chat/completions", json={**CHAT, "stop": "END", "max_completion_tokens": 3})
    assert llm.chat_requests()[-1]["body"]["stop"] == ["END"]
    assert llm.chat_requests()[-1]["body"]["max_completion_tokens"] == 3
    client.post("/v1/chat/completions", json=CHAT)
    assert not {"temperature", "max_completion_tokens", "stop"} & set(
        llm.chat_requests()[-1]["body"]
    )
    for bad in ({"temperature": 5}, {"max_tokens": 0}, {"stop": ["a", "b", "c", "d", "e"]}):
        assert client.post("/v1/chat/completions", json={**CHAT, **bad}).status_code == 422


def test_streamed_usage_when_asked(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(answer=QUESTION)
    stream = {"messages": FOLLOW_UP, "stream": True, "stream_options": {"include_usage": True}}
    events = _events(client.post("/v1/chat/completions", json=stream).text)
    assert events[-1] == "[DONE]"
    last = events[-2]
    assert last["choices"] == []
    rewrite, answer = llm.chat_requests()
    assert answer["body"]["stream_options"] == {"include_usage": True}
    first, second = _reported_usage(rewrite, QUESTION), _reported_usage(answer, llm.answer)
    assert last["usage"]["prompt_tokens"] == first[0] + second[0]
    assert last["usage"]["completion_tokens"] == first[1] + second[1]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events[1:-2])
    assert text == llm.answer
    # Not asked: no usage chunk, and the endpoint is not asked for stream usage either.
    llm.reset()
    events = _events(client.post("/v1/chat/completions", json={**CHAT, "stream": True}).text)
    assert all("usage" not in e for e in events[:-1])
    assert "stream_options" not in llm.chat_requests()[-1]["body"]


def test_citations_reach_every_client(client: TestClient, llm: FakeOpenAIServer) -> None:
    from langchain_openai import ChatOpenAI
    from milvus_rag.chains import CITATION_INSTRUCTION

    body = client.post("/v1/chat/completions", json={**CHAT, "citations": True}).json()
    content = body["choices"][0]["message"]["content"]
    assert content.startswith(llm.answer + "\n\nSources:\n[1] en/faq/product_faq.md\n[2] ")
    assert body["sources"][0]["source"] == "en/faq/product_faq.md"  # the field stays
    assert llm.chat_requests()[-1]["body"]["messages"][0]["content"].endswith(CITATION_INSTRUCTION)

    chat = ChatOpenAI(
        base_url="http://testserver/v1",
        api_key="unused",  # type: ignore[arg-type]
        model="milvus-rag",
        http_client=client,
        max_retries=0,
        extra_body={"citations": True},
    )
    assert chat.invoke(QUESTION).content == content
    assert "".join(str(c.content) for c in chat.stream(QUESTION)) == content
    plain = client.post("/v1/chat/completions", json=CHAT).json()
    assert plain["choices"][0]["message"]["content"] == llm.answer


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


def test_langserve_takes_history(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(answer=QUESTION)
    history = [["user", "Tell me about Milvus."], ["assistant", "A vector database."]]
    body = {"input": {"question": "Where is its data?", "chat_history": history}}
    output = client.post("/rag-with-sources/invoke", json=body).json()["output"]
    assert output["answer"] == llm.answer
    assert output["context"][0]["metadata"]["source"] == "en/faq/product_faq.md"
    rewrite, _ = llm.chat_requests()
    assert "User: Tell me about Milvus." in rewrite["body"]["messages"][1]["content"]


def test_a_failing_answer_after_the_rewrite_keeps_its_status(
    client: TestClient, llm: FakeOpenAIServer
) -> None:
    history = [["user", "Tell me about Milvus."], ["assistant", "A vector database."]]
    body = {"input": {"question": "Where is its data?", "chat_history": history}}
    for path in STREAM_ROUTES:
        llm.script(answer=QUESTION)  # the rewrite answers; the answer call then fails
        llm.script(status=503)
        response = client.post(path, json=body)
        assert response.status_code == 502, (path, response.text)
        assert response.json()["error"]["type"] == "LLMServerError"
    llm.script(answer=QUESTION)
    llm.script(status=503)
    chat = {"messages": FOLLOW_UP, "stream": True}
    assert client.post("/v1/chat/completions", json=chat).status_code == 502


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
