"""LLM fallbacks: two real local OpenAI-compatible servers, the primary failing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMServerError,
    MissingAPIKeyError,
)
from milvus_rag.llm import (
    EndpointChatOpenAI,
    EndpointRecorder,
    FallbackChatModel,
    chat_model_from_settings,
)
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer, closed_port

BACKUP_ANSWER = "The backup endpoint says: object storage."


@pytest.fixture(scope="module")
def _backup_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(answer=BACKUP_ANSWER, model="backup-model") as server:
        yield server


@pytest.fixture
def backup(_backup_server: FakeOpenAIServer) -> FakeOpenAIServer:
    _backup_server.reset()
    return _backup_server


def _fallback(server: FakeOpenAIServer) -> dict[str, Any]:
    return {"base_url": server.base_url, "model": "backup-model", "api_key_env": "TEST_LLM_KEY"}


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], backup: FakeOpenAIServer
) -> Callable[..., Settings]:
    def build(**llm: Any) -> Settings:
        return make_settings(llm={"fallbacks": [_fallback(backup)], **llm})

    return build


def test_no_fallbacks_gives_the_plain_model(make_settings: Callable[..., Settings]) -> None:
    assert isinstance(chat_model_from_settings(make_settings()), EndpointChatOpenAI)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_fall_back(
    settings: Callable[..., Settings],
    llm: FakeOpenAIServer,
    backup: FakeOpenAIServer,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = chat_model_from_settings(settings())
    assert isinstance(model, FallbackChatModel)
    llm.script(status=status)
    with caplog.at_level(logging.WARNING, logger="milvus_rag.llm"):
        answer = model.invoke("Where does Milvus store data?")
    assert answer.content == BACKUP_ANSWER
    assert answer.response_metadata["endpoint"] == backup.base_url
    assert len(llm.chat_requests()) == 1 and len(backup.chat_requests()) == 1
    assert backup.chat_requests()[0]["body"]["model"] == "backup-model"
    assert f"answered by the fallback {backup.base_url}" in caplog.text


def test_the_primary_answers_when_it_can(
    settings: Callable[..., Settings], llm: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    answer = chat_model_from_settings(settings()).invoke("q?")
    assert answer.content == llm.answer and answer.response_metadata["endpoint"] == llm.base_url
    assert backup.requests == []


def test_unreachable_primary_falls_back(
    make_settings: Callable[..., Settings], backup: FakeOpenAIServer
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    s = make_settings(llm={"base_url": dead, "fallbacks": [_fallback(backup)]})
    answer = chat_model_from_settings(s).invoke("q?")
    assert answer.content == BACKUP_ANSWER


def test_streams_fall_back_and_say_which_endpoint(
    settings: Callable[..., Settings], llm: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    model = chat_model_from_settings(settings())
    llm.script(status=503)
    recorder = EndpointRecorder()
    chunks = list(model.stream("q?", {"callbacks": [recorder]}))
    assert "".join(str(c.content) for c in chunks) == BACKUP_ANSWER
    assert recorder.base_url == backup.base_url
    assert backup.chat_requests()[0]["body"]["stream"] is True


def test_async_invoke_and_stream_fall_back(
    settings: Callable[..., Settings], llm: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    model = chat_model_from_settings(settings())

    async def run() -> tuple[Any, str]:
        llm.script(status=503)
        answer = await model.ainvoke("q?")
        llm.script(status=502)
        parts = [str(c.content) async for c in model.astream("q?")]
        return answer, "".join(parts)

    answer, streamed = asyncio.run(run())
    assert answer.content == streamed == BACKUP_ANSWER
    assert answer.response_metadata["endpoint"] == backup.base_url


def test_a_rejected_key_is_not_hidden(
    settings: Callable[..., Settings], llm: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    llm.script(status=401)
    with pytest.raises(LLMAuthError, match="TEST_LLM_KEY"):
        chat_model_from_settings(settings()).invoke("q?")
    assert backup.requests == []


def test_every_endpoint_failing_names_each(
    settings: Callable[..., Settings], llm: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    llm.script(status=503)
    backup.script(status=429)
    with pytest.raises(LLMServerError) as info:
        chat_model_from_settings(settings()).invoke("q?")
    message = str(info.value)
    assert llm.base_url in message and backup.base_url in message and "429" in message
    assert "\n" not in message


def test_a_fallback_key_is_required_up_front(
    make_settings: Callable[..., Settings], backup: FakeOpenAIServer
) -> None:
    fallback = {**_fallback(backup), "api_key_env": "BACKUP_KEY_UNSET"}
    with pytest.raises(MissingAPIKeyError, match="BACKUP_KEY_UNSET"):
        chat_model_from_settings(make_settings(llm={"fallbacks": [fallback]}))
    assert backup.requests == []


def test_error_types_that_fall_back() -> None:
    from milvus_rag.llm import FALLBACK_ERRORS

    assert LLMConnectionError in FALLBACK_ERRORS and LLMRateLimitError in FALLBACK_ERRORS
    assert LLMAuthError not in FALLBACK_ERRORS


# --------------------------------------------------------------------------- the CLI

runner = CliRunner()


@pytest.mark.slow
def test_ask_json_names_the_endpoint_that_answered(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    backup: FakeOpenAIServer,
    faq_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from milvus_rag.cli import app
    from tests.conftest import base_config

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    config = base_config(tmp_path / "fb.db", tiny_model_dir, llm)
    config["llm"]["fallbacks"] = [_fallback(backup)]
    path = tmp_path / "fb.yaml"
    path.write_text(yaml.safe_dump(config))
    ingest = ["ingest", str(faq_folder), "--glob", "en/faq/*.md", "--config", str(path)]
    assert runner.invoke(app, ingest).exit_code == 0

    ask = ["ask", "Where does Milvus store data?", "--json", "--config", str(path)]
    result = runner.invoke(app, ask)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["endpoint"] == llm.base_url

    llm.script(status=503)
    result = runner.invoke(app, ask)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"] == BACKUP_ANSWER and data["endpoint"] == backup.base_url
    assert f"answered by the fallback {backup.base_url}" in result.stderr

    llm.script(status=503)
    streamed = runner.invoke(app, [*ask[:-3], "--config", str(path)])
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.startswith(BACKUP_ANSWER)
