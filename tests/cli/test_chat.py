"""``milvus-rag chat`` through typer's runner, stdin fed line by line, against the local
LLM server and a Milvus Lite collection."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow

runner = CliRunner()
FIRST = "Where does Milvus store data?"
REWRITTEN = "How does Milvus flush data?"


@pytest.fixture
def config(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    faq_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    path = tmp_path / "chat.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "chat.db", tiny_model_dir, llm)))
    glob = ["--glob", "en/faq/*.md", "--splitter", "tutorial"]
    result = runner.invoke(app, ["ingest", str(faq_folder), *glob, "--config", str(path)])
    assert result.exit_code == 0, result.output
    llm.reset()
    return path


def chat(config: Path, lines: list[str], *options: str) -> object:
    stdin = "".join(line + "\n" for line in lines)
    return runner.invoke(
        app, ["chat", *options, "--config", str(config)], input=stdin, catch_exceptions=False
    )


def test_chat_keeps_history_and_rewrites_follow_ups(config: Path, llm: FakeOpenAIServer) -> None:
    llm.script()  # the first answer
    llm.script(answer=REWRITTEN)  # the rewrite of the follow-up
    result = chat(config, [FIRST, "", "And how is it flushed?", "exit", "never asked"])
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    out = result.stdout  # type: ignore[attr-defined]
    assert out.count(llm.answer) == 2 and out.count("Sources:") == 2
    assert "en/faq/product_faq.md" in out
    first, rewrite, second = llm.chat_requests()
    assert first["body"]["stream"] is True and second["body"]["stream"] is True
    transcript = rewrite["body"]["messages"][1]["content"]
    assert transcript == (
        f"Conversation:\nUser: {FIRST}\nAssistant: {llm.answer}\n\n"
        "Last question: And how is it flushed?"
    )
    assert f"<question>\n{REWRITTEN}\n</question>" in second["body"]["messages"][1]["content"]
    assert "never asked" not in str([r["body"] for r in llm.chat_requests()])


def test_chat_errors_are_one_line_and_the_session_goes_on(
    config: Path, llm: FakeOpenAIServer
) -> None:
    llm.script(status=503)
    result = chat(config, [FIRST, FIRST])  # then end of input (Ctrl-D)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    errors = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "503" in errors[0]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert result.stdout.count(llm.answer) == 1  # type: ignore[attr-defined]
    assert len(llm.chat_requests()) == 2  # the failed turn is not history: no rewrite


def test_chat_options(config: Path, llm: FakeOpenAIServer) -> None:
    result = chat(config, [FIRST, "quit"], "-k", "1", "--source", "en/faq/", "--citations")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    out = result.stdout  # type: ignore[attr-defined]
    assert llm.answer + "\n\nSources:\n[1] en/faq/" in out and "[2]" not in out
    user = llm.chat_requests()[-1]["body"]["messages"][1]["content"]
    assert "<context>\n[1] " in user and "\n\n[2] " not in user


def test_chat_needs_a_key_before_the_session(
    config: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    result = chat(config, [FIRST])
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "TEST_LLM_KEY" in result.stderr and "\n" not in result.stderr.strip()  # type: ignore[attr-defined]
    assert llm.chat_requests() == []
