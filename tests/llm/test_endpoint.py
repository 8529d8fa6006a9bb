"""`milvus_rag.llm.endpoint`: ``EndpointChatOpenAI`` against the real local OpenAI-compatible server
(LangChain's standard chat-model tests, streams, retries, keys that cannot be sent).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from milvus_rag.errors import (
    ConfigError,
)
from milvus_rag.llm import EndpointChatOpenAI
from milvus_rag.settings import Settings
from tests.support.llm import _model
from tests.support.openai_server import FakeOpenAIServer
from tests.support.secrets import PRIMARY, _assert_clean


def test_invoke_and_stream(make_settings: Callable[..., Settings], llm: FakeOpenAIServer) -> None:
    model = _model(make_settings)
    assert model.invoke("hi").content == llm.answer
    chunks = [c.content for c in model.stream("hi")]
    assert len(chunks) > 1 and "".join(chunks) == llm.answer  # type: ignore[arg-type]
    request = llm.chat_requests()[0]
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["body"]["model"] == "test-model"


def test_rate_limit_retried_with_retry_after(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    answer = _model(make_settings, max_retries=1).invoke("hi")
    assert answer.content == llm.answer
    assert time.monotonic() - started >= 0.9  # waited as the server asked
    assert len(llm.chat_requests()) == 2


class TestEndpointChatOpenAIStandard(ChatModelUnitTests):
    """LangChain's standard unit suite for the project's chat model."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return EndpointChatOpenAI

    @property
    def chat_model_params(self) -> dict:
        return {
            "model": "test-model",
            "api_key": "test-key",
            "base_url": "http://127.0.0.1:9/v1",
            "key_env": "TEST_LLM_KEY",
        }

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @pytest.mark.xfail(reason="speed is measured by benchmarks/, never by unit tests", run=False)
    def test_init_time(self) -> None:  # type: ignore[override]
        raise NotImplementedError

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return (
            {"OPENAI_API_KEY": "env-key", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"},
            {"model": "test-model"},
            {"openai_api_key": "env-key", "openai_api_base": "http://127.0.0.1:9/v1"},
        )


# -- keys that cannot be sent in a header: typed errors ------------------------------------


@pytest.mark.parametrize(
    "key", [f"{PRIMARY}\r", f"{PRIMARY}\r\n", f"{PRIMARY}\xe9", f"a{PRIMARY}\nb"]
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_key_given_in_code_that_cannot_be_sent_is_a_config_error(
    llm: FakeOpenAIServer, key: str, stream: bool
) -> None:
    """Settings never let such a key through; httpx's refusal (which quotes the header)
    still becomes a one-line ConfigError naming the variable."""
    from milvus_rag.llm import EndpointChatOpenAI

    model = EndpointChatOpenAI(
        base_url=llm.base_url, api_key=key, model="m", max_retries=0, key_env="MY_KEY"
    )
    with pytest.raises(ConfigError) as caught:
        if stream:
            list(model.stream("hi"))
        else:
            model.invoke("hi")
    message = str(caught.value)
    assert "MY_KEY" in message and "header" in message
    _assert_clean(message, "the error")
