"""The chat model against a real local OpenAI-compatible server: success and each failure."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from milvus_rag.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
    MissingAPIKeyError,
)
from milvus_rag.llm import chat_model_from_settings
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer, closed_port


def _model(make_settings: Callable[..., Settings], **llm: object):
    return chat_model_from_settings(make_settings(llm=llm))


def test_invoke_and_stream(make_settings: Callable[..., Settings], llm: FakeOpenAIServer) -> None:
    model = _model(make_settings)
    assert model.invoke("hi").content == llm.answer
    chunks = [c.content for c in model.stream("hi")]
    assert len(chunks) > 1 and "".join(chunks) == llm.answer  # type: ignore[arg-type]
    request = llm.chat_requests()[0]
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["body"]["model"] == "test-model"


@pytest.mark.parametrize("status", [401, 403])
def test_key_rejected(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, status: int
) -> None:
    llm.script(status=status)
    with pytest.raises(LLMAuthError) as info:
        _model(make_settings).invoke("hi")
    assert "TEST_LLM_KEY" in str(info.value) and f"HTTP {status}" in str(info.value)
    assert "test-key" not in str(info.value)


def test_not_found_names_url_and_model(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(status=404)
    with pytest.raises(LLMNotFoundError) as info:
        _model(make_settings).invoke("hi")
    message = str(info.value)
    assert llm.base_url in message and "test-model" in message and "llm.base_url" in message


def test_rate_limit_retried_with_retry_after(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    answer = _model(make_settings, max_retries=1).invoke("hi")
    assert answer.content == llm.answer
    assert time.monotonic() - started >= 0.9  # waited as the server asked
    assert len(llm.chat_requests()) == 2


def test_rate_limit_after_retries(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    for _ in range(3):
        llm.script(status=429, headers={"retry-after-ms": "10"})
    with pytest.raises(LLMRateLimitError, match="429"):
        _model(make_settings, max_retries=1).invoke("hi")
    assert len(llm.chat_requests()) == 2


def test_server_error(make_settings: Callable[..., Settings], llm: FakeOpenAIServer) -> None:
    llm.script(status=503)
    with pytest.raises(LLMServerError, match="HTTP 503"):
        _model(make_settings).invoke("hi")


def test_timeout_uses_llm_timeout(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(delay=3.0)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"0\.5 s.*llm\.timeout"):
        _model(make_settings, timeout=0.5).invoke("hi")
    assert time.monotonic() - started < 2.5


def test_default_timeout_is_60s() -> None:
    from milvus_rag.settings import load_settings

    model = chat_model_from_settings(load_settings(overrides={"llm": {"preset": "local"}}))
    assert model.request_timeout == 60


def test_connection_refused(make_settings: Callable[..., Settings]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(LLMConnectionError) as info:
        _model(make_settings, base_url=url).invoke("hi")
    assert url in str(info.value) and "\n" not in str(info.value)


def test_stream_errors_are_typed(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(status=401)
    with pytest.raises(LLMAuthError):
        list(_model(make_settings).stream("hi"))


async def test_async_errors_are_typed(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(status=404)
    with pytest.raises(LLMNotFoundError):
        await _model(make_settings).ainvoke("hi")
    llm.script(status=500)
    with pytest.raises(LLMServerError):
        async for _ in _model(make_settings).astream("hi"):
            pass


def test_missing_key_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    from milvus_rag.settings import load_settings

    with pytest.raises(MissingAPIKeyError, match="LEPTONAI_TOKEN"):
        chat_model_from_settings(load_settings())


def test_local_preset_needs_no_key() -> None:
    from milvus_rag.settings import load_settings

    model = chat_model_from_settings(load_settings(overrides={"llm": {"preset": "local"}}))
    assert model.openai_api_key is not None
