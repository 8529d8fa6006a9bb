"""`milvus_rag.llm.failures`: each failure of an endpoint as a typed one-line error (sync, async,
streams), against the real local OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from milvus_rag.chains import build_rag_chain

from milvus_rag.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
)
from milvus_rag.settings import Settings
from tests.support.llm import _model
from tests.support.llm_bounds import QUESTION, Passages, _run
from tests.support.openai_server import FakeOpenAIServer, closed_port


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
