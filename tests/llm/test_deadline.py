"""`milvus_rag.llm.deadline`: ``llm.timeout`` over a whole call, a dripping endpoint included."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from milvus_rag.chains import build_rag_chain

from milvus_rag.errors import (
    LLMTimeoutError,
)
from milvus_rag.settings import Settings
from tests.support.llm import _model
from tests.support.llm_bounds import QUESTION, Passages, _run
from tests.support.openai_server import FakeOpenAIServer


def test_timeout_uses_llm_timeout(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(delay=3.0)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"0\.5 s.*llm\.timeout"):
        _model(make_settings, timeout=0.5).invoke("hi")
    assert time.monotonic() - started < 2.5


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
