"""The chat model against a real local OpenAI-compatible server: success and each failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from milvus_rag.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    MissingAPIKeyError,
)
from milvus_rag.llm import EndpointChatOpenAI, chat_model_from_settings
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


def _not_a_completion(error: object, llm: FakeOpenAIServer) -> str:
    message = str(error)
    assert llm.base_url in message and "\n" not in message
    assert "not with an OpenAI-compatible chat completion" in message
    return message


def test_html_page_is_a_response_error(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    model = _model(make_settings)
    llm.script_html()
    with pytest.raises(LLMResponseError) as info:
        model.invoke("hi")
    assert "HTML page" in _not_a_completion(info.value, llm)
    llm.script_html()
    with pytest.raises(LLMResponseError) as info:
        list(model.stream("hi"))
    _not_a_completion(info.value, llm)


async def test_html_page_is_a_response_error_async(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    model = _model(make_settings)
    llm.script_html()
    with pytest.raises(LLMResponseError) as info:
        await model.ainvoke("hi")
    _not_a_completion(info.value, llm)
    llm.script_html()
    with pytest.raises(LLMResponseError) as info:
        async for _ in model.astream("hi"):
            pass
    _not_a_completion(info.value, llm)


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        ({"object": "list", "data": []}, None, "without choices"),
        ({"error": {"message": "model is loading"}}, None, "model is loading"),
        ("{not json", "application/json", "invalid JSON"),
        ("Service temporarily moved", None, "Service temporarily moved"),
    ],
)
def test_other_non_completions(
    make_settings: Callable[..., Settings],
    llm: FakeOpenAIServer,
    body: object,
    content_type: str | None,
    shown: str,
) -> None:
    model = _model(make_settings)
    llm.script(body=body, content_type=content_type)
    with pytest.raises(LLMResponseError) as info:
        model.invoke("hi")
    assert shown in _not_a_completion(info.value, llm)
    llm.script(body=body, content_type=content_type)
    with pytest.raises(LLMResponseError):
        list(model.stream("hi"))


def test_error_inside_a_stream_is_typed(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    llm.script(error_after=2)
    pieces: list[object] = []
    with pytest.raises(LLMError) as info:
        for chunk in _model(make_settings).stream("hi"):
            pieces.append(chunk.content)
    assert "".join(map(str, pieces))  # part of the answer came first
    assert llm.base_url in str(info.value)


@pytest.fixture
def ask_config(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    make_settings: Callable[..., Settings],
) -> Path:
    """A config file whose collection holds the chain documents (for ``milvus-rag ask``)."""
    from tests.conftest import base_config
    from tests.support.corpus import store_chain_docs

    store_chain_docs(make_settings())
    path = tmp_path / "ask.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "milvus.db", tiny_model_dir, llm)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--no-stream"], ["--json"]])
def test_ask_html_endpoint_is_one_line(
    ask_config: Path, llm: FakeOpenAIServer, flags: list[str]
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    llm.script_html()
    result = CliRunner().invoke(
        app, ["ask", "Where does Milvus store data?", *flags, "-c", str(ask_config)]
    )
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output
    _not_a_completion(err, llm)


@pytest.mark.slow
def test_ask_error_after_part_of_the_answer(ask_config: Path, llm: FakeOpenAIServer) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    llm.script(error_after=2)
    result = CliRunner().invoke(
        app, ["ask", "Where does Milvus store data?", "-c", str(ask_config)]
    )
    assert result.exit_code == 1
    assert result.stdout.endswith("\n") and " ".join(llm.answer.split()[:2]) in result.stdout
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and llm.base_url in err


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--no-stream"], ["--json"]])
def test_ask_no_choices_is_one_line(
    ask_config: Path, llm: FakeOpenAIServer, flags: list[str]
) -> None:
    """``{"choices": []}`` (content filters answer so): one line, exit 1, no traceback."""
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    llm.script(body={"choices": []})
    result = CliRunner().invoke(
        app, ["ask", "Where does Milvus store data?", *flags, "-c", str(ask_config)]
    )
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output
    assert "no choices" in err and llm.base_url in err


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
