"""`milvus_rag.server.openai`: ``/v1/chat/completions`` and ``/v1/models`` (streams, usage,
conversations, citations, failures before and after the first byte).
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
from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from tests.support.corpus import STORAGE_ANSWER
from tests.support.llm_bounds import CHAT_WITHOUT_MODEL, QUESTION, Passages
from tests.support.openai_server import closed_port
from tests.support.server import CHAT, STREAM_ROUTES, _events, _fill, _sse_events, _uvicorn


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT_WITHOUT_MODEL),
        ("/v1/chat/completions", {**CHAT_WITHOUT_MODEL, "stream": True}),
        ("/rag/invoke", {"input": QUESTION}),
        ("/rag-with-sources/invoke", {"input": QUESTION}),
    ],
)
def test_no_choices_is_502_with_one_line(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, path: str, body: Any
) -> None:
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app

    app = create_app(make_settings(), retriever=Passages())
    with TestClient(app, raise_server_exceptions=False) as client:
        llm.script(body={"choices": []})
        response = client.post(path, json=body)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "no choices" in message and "\n" not in message


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records carrying a traceback, but Milvus Lite's gRPC noise (see cli._common)."""
    return [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith("grpc") and (r.exc_info or "Traceback" in r.getMessage())
    ]


@pytest.mark.slow
def test_models(client: TestClient) -> None:
    assert client.get("/v1/models").json()["data"][0]["id"] == "milvus-rag"


@pytest.mark.slow
def test_chat_completions_with_sources(client: TestClient, llm: FakeOpenAIServer) -> None:
    body = client.post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": llm.answer}
    assert body["sources"][0]["source"] == "en/faq/product_faq.md"
    assert STORAGE_ANSWER in body["sources"][0]["text"]
    assert isinstance(body["sources"][0]["score"], float)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_llm_error_before_a_stream_starts(client: TestClient, llm: FakeOpenAIServer) -> None:
    llm.script(status=404)
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "LLMNotFoundError"


@pytest.mark.slow
def test_unreachable_llm(make_settings: Callable[..., Settings]) -> None:
    s = _fill(make_settings(llm={"base_url": f"http://127.0.0.1:{closed_port()}/v1"}))
    with TestClient(create_app(s)) as c:
        response = c.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "LLMConnectionError"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_single_turn_chat_costs_one_call(client: TestClient, llm: FakeOpenAIServer) -> None:
    body = client.post("/v1/chat/completions", json=CHAT).json()
    (request,) = llm.chat_requests()
    prompt, completion = _reported_usage(request, llm.answer)
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["completion_tokens"] == completion


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
