"""Bounded LLM calls: a deadline over the whole call, answers without choices, a capped
question rewrite, citations that name only retrieved passages, clean streams in an outage.

Through the chains and the server against the real local OpenAI-compatible server, over a
retriever serving fixed passages (no Milvus: these are fast). Nothing here measures time:
a dripping endpoint never ends, so only a bounded call can end with the typed error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from milvus_rag.chains import build_rag_chain

from milvus_rag.errors import LLMResponseError, LLMTimeoutError
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer

QUESTION = "Where does Milvus store data?"
CHAT_WITHOUT_MODEL = {"messages": [{"role": "user", "content": QUESTION}]}


class Passages(BaseRetriever):
    """Two fixed passages, whatever the question."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(
                page_content="Milvus stores data in object storage.",
                metadata={"source": "storage.md", "score": 0.9},
            ),
            Document(
                page_content="Metadata lives in etcd.", metadata={"source": "meta.md", "score": 0.8}
            ),
        ]


@pytest.fixture(autouse=True)
def _fresh_sse_exit_event() -> Iterator[None]:
    """sse-starlette keeps one exit event per process, bound to the first loop that streamed."""
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit_event = None
    yield
    AppStatus.should_exit_event = None


def _run(call: str, chain: Any, value: Any) -> Any:
    if call == "invoke":
        return chain.invoke(value)
    if call == "stream":
        return list(chain.stream(value))
    if call == "ainvoke":
        return asyncio.run(chain.ainvoke(value))

    async def consume() -> list[Any]:
        return [part async for part in chain.astream(value)]

    return asyncio.run(consume())


# -- llm.timeout bounds the whole call -------------------------------------------------


@pytest.mark.timeout(300)  # the server drips forever: without the deadline, a failure not a hang
@pytest.mark.parametrize(
    ("drip", "call"),
    [("headers", "invoke"), ("body", "invoke"), ("body", "stream"), ("body", "astream")],
)
def test_a_dripping_llm_ends_with_a_timeout(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, drip: str, call: str
) -> None:
    """An endpoint sending a byte (or a token) at a time, forever: each read is quick, so
    only a deadline over the whole call (connect, headers, body) ends it."""
    settings = make_settings(llm={"timeout": 2, "max_retries": 2})
    chain = build_rag_chain(settings, retriever=Passages())
    llm.script(drip=drip)  # type: ignore[arg-type]
    with pytest.raises(LLMTimeoutError, match=r"llm\.timeout"):
        _run(call, chain, QUESTION)
    assert len(llm.chat_requests()) == 1  # a call past its deadline is not retried


# -- an answer without choices ----------------------------------------------------------


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream"])
def test_no_choices_is_a_response_error(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, call: str
) -> None:
    chain = build_rag_chain(make_settings(), retriever=Passages())
    llm.script(body={"choices": []})
    with pytest.raises(LLMResponseError) as info:
        _run(call, chain, QUESTION)
    assert llm.base_url in str(info.value) and "\n" not in str(info.value)


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


# -- the history rewrite is capped ------------------------------------------------------

HISTORY = [
    ("user", "How is data stored in Milvus?"),
    ("assistant", "In object storage, with metadata in etcd."),
]


def _question_sent(request: dict[str, Any]) -> str:
    user = request["body"]["messages"][-1]["content"]
    return str(user.split("<question>\n", 1)[1].split("\n</question>", 1)[0])


@pytest.mark.parametrize("call", ["invoke", "astream"])
def test_a_huge_rewrite_is_held_to_the_question_limit(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, call: str
) -> None:
    settings = make_settings(server={"max_question_chars": 300})
    chain = build_rag_chain(settings, retriever=Passages())
    llm.script(answer="Where is the data flushed to? " + "spam " * 400_000)  # about 2 MB
    answer = _run(call, chain, {"question": "And flushed?", "chat_history": HISTORY})
    assert "".join(answer) == llm.answer
    rewrite, answered = llm.chat_requests()
    # The rewrite call asks for no more (langchain-openai sends max_tokens under its new name).
    cap = rewrite["body"].get("max_completion_tokens", rewrite["body"].get("max_tokens"))
    assert cap == 300
    question = _question_sent(answered)
    assert question.startswith("Where is the data flushed to?") and len(question) <= 300
    assert len(answered["raw"]) < 10_000  # the answer request stays small


# -- citations name retrieved passages only ----------------------------------------------

#: A document carrying its own "source list", which a model may copy into its answer.
FORGED_DOC = "Sources:\n[1] https://evil.example/login\n[2] https://evil.example/pay"
OURS = "Sources:\n[1] storage.md\n[2] meta.md"


@pytest.mark.parametrize(
    "answer",
    [
        # made up by the model, after the answer
        "Milvus stores data in object storage [1][999].\n\n"
        "**Sources:**\n[1] https://evil.example/login\n[999] https://evil.example/pay",
        # copied from a document, before the answer
        f"{FORGED_DOC}\n\nMilvus stores data in object storage [1, 7] and etcd [2] [0].",
    ],
)
@pytest.mark.parametrize("call", ["invoke", "stream", "astream"])
def test_citations_name_only_retrieved_passages(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, answer: str, call: str
) -> None:
    chain = build_rag_chain(make_settings(), retriever=Passages(), citations=True)
    llm.script(answer=answer)
    result = _run(call, chain, QUESTION)
    text = "".join(result)
    assert "evil" not in text and "999" not in text and "[7]" not in text and "[0]" not in text
    assert text.count("Sources") == 1 and text.endswith("\n\n" + OURS)
    assert "Milvus stores data in object storage [1]" in text
    if call != "invoke":
        assert len(result) > 2  # still streamed in pieces


# -- streams failing in an LLM outage leave no task behind ------------------------------


def test_streams_in_an_outage_leave_no_unretrieved_task(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream that fails is one 502 and one access-log line: no ``Task exception was
    never retrieved`` (LangChain's parallel steps used to leave two per stream)."""
    from milvus_rag.server import create_app
    from tests.support.openai_server import closed_port

    down = f"http://127.0.0.1:{closed_port()}/v1"
    app = create_app(make_settings(llm={"base_url": down}), retriever=Passages())
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    requests = [
        ("/v1/chat/completions", {"messages": [*history, CHAT_WITHOUT_MODEL["messages"][0]], "stream": True}),
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
