"""``milvus-rag ask`` through typer's runner: streamed answers, sources, LLM failures as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest_faq, run
from tests.support.openai_server import FakeOpenAIServer, closed_port


@pytest.mark.slow
def test_ask_streams_then_lists_sources(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer
) -> None:
    _ingest_faq(config, faq_folder)
    result = run("ask", "Where does Milvus store data?", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(llm.answer)
    assert "Sources:" in result.stdout and "en/faq/product_faq.md" in result.stdout
    assert llm.chat_requests()[-1]["body"]["stream"] is True

    result = run("ask", "Where does Milvus store data?", "--json", "--config", str(config))
    data = json.loads(result.stdout)
    assert data["answer"] == llm.answer
    assert data["sources"][0]["source"] == "en/faq/product_faq.md"
    assert set(data["sources"][0]) == {"text", "source", "score"}

    result = run("ask", "Where does Milvus store data?", "--no-stream", "--config", str(config))
    assert result.exit_code == 0 and result.stdout.startswith(llm.answer)
    assert llm.chat_requests()[-1]["body"].get("stream") in (None, False)


def test_ask_without_key_fails_before_any_request(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    monkeypatch.delenv("TEST_LLM_KEY")
    llm.reset()
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err
    assert llm.requests == []


@pytest.mark.slow
def test_ask_unreachable_endpoint(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("MILVUS_RAG_LLM__BASE_URL", url)
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert url in err and "llm.base_url" in err


@pytest.mark.slow
def test_ask_rejected_key(config: Path, faq_folder: Path, llm: FakeOpenAIServer) -> None:
    _ingest_faq(config, faq_folder)
    llm.script(status=401)
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err and "401" in err
