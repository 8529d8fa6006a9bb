"""The command line through typer's runner: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer, closed_port

runner = CliRunner()


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "cli.db", tiny_model_dir, llm)))
    return path


def run(*args: str) -> object:
    return runner.invoke(app, list(args), catch_exceptions=False)


def _ingest_faq(config: Path, source: Path, *extra: str) -> object:
    glob = ("--glob", "en/faq/*.md", "--splitter", "tutorial")
    return run("ingest", str(source), *glob, *extra, "--config", str(config))


def _tutorial_report(config: Path, source: Path) -> tuple[int, int]:
    """Files seen and chunks written by a JSON tutorial-splitter ingest of the FAQ."""
    result = _ingest_faq(config, source, "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    report = json.loads(result.stdout)  # type: ignore[attr-defined]
    return report["files_seen"], report["chunks_written"]


def test_ingest_tutorial_gives_72_chunks_then_nothing(config: Path, faq_folder: Path) -> None:
    result = _ingest_faq(config, faq_folder)
    assert result.exit_code == 0, result.output
    assert "files seen 4" in result.stdout and "chunks written 72" in result.stdout
    again = _ingest_faq(config, faq_folder)
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout and "unchanged 4" in again.stdout
    assert "chunks written 0" in again.stdout


def test_ingest_zip_and_json(config: Path, faq_zip: Path) -> None:
    assert _tutorial_report(config, faq_zip) == (4, 72)


def test_search_prints_like_the_tutorial(config: Path, faq_folder: Path) -> None:
    _ingest_faq(config, faq_folder)
    result = run("search", "Where does Milvus store data?", "--config", str(config))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(isinstance(r, list) and len(r) == 2 for r in rows)
    assert rows[0][0].startswith("Where does Milvus store data?")
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)

    result = run(
        "search", "Where does Milvus store data?", "-k", "5", "--json", "--config", str(config)
    )
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and set(hits[0]) == {"text", "source", "score"}
    assert hits[0]["source"] == "en/faq/product_faq.md"


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


def _one_line_error(result: object, code: int | None = None) -> str:
    assert result.exit_code != 0  # type: ignore[attr-defined]
    if code is not None:
        assert result.exit_code == code  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_ask_without_key_fails_before_any_request(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    monkeypatch.delenv("TEST_LLM_KEY")
    llm.reset()
    err = _one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err
    assert llm.requests == []


def test_ask_unreachable_endpoint(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("MILVUS_RAG_LLM__BASE_URL", url)
    err = _one_line_error(run("ask", "q?", "--config", str(config)))
    assert url in err and "llm.base_url" in err


def test_ask_rejected_key(config: Path, faq_folder: Path, llm: FakeOpenAIServer) -> None:
    _ingest_faq(config, faq_folder)
    llm.script(status=401)
    err = _one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err and "401" in err


def test_no_files_matched(config: Path, faq_folder: Path) -> None:
    err = _one_line_error(
        run("ingest", str(faq_folder), "--glob", "*.pdf", "--config", str(config))
    )
    assert "*.pdf" in err


def test_missing_source(config: Path, tmp_path: Path) -> None:
    err = _one_line_error(run("ingest", str(tmp_path / "nope"), "--config", str(config)))
    assert "nope" in err


def test_search_empty_collection(config: Path) -> None:
    err = _one_line_error(run("search", "q?", "--config", str(config)))
    assert "milvus-rag ingest" in err


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  top_k: lots\n")
    err = _one_line_error(run("search", "q?", "--config", str(bad)), code=2)
    assert "retrieval.top_k" in err
    err = _one_line_error(run("search", "q?", "--config", str(tmp_path / "none.yaml")), code=2)
    assert "none.yaml" in err


def test_bad_flag_values(config: Path, faq_folder: Path) -> None:
    _one_line_error(
        run("ingest", str(faq_folder), "--splitter", "words", "--config", str(config)), code=2
    )
    _one_line_error(run("search", "q", "--mode", "sparse", "--config", str(config)), code=2)
    _one_line_error(run("search", "q", "-k", "0", "--config", str(config)), code=2)


def test_model_not_downloadable_offline(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"milvus:\n  uri: {tmp_path / 'hub.db'}\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text about milvus.\n")
    err = _one_line_error(run("ingest", str(tmp_path / "docs"), "--config", str(cfg)))
    assert "embedding.model_dir" in err


def test_config_command_redacts_secrets(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "tok-secret")
    result = run("config", "--config", str(config))
    assert result.exit_code == 0
    assert "tok-secret" not in result.stdout and "test-key" not in result.stdout
    data = json.loads(result.stdout)
    assert data["milvus"]["token"] == "**********"
    assert data["llm"]["api_key"] == "**********"


@pytest.mark.shared
def test_tutorial_parity_on_the_shared_archive(config: Path) -> None:
    from tests.conftest import SHARED_ZIP, require

    assert _tutorial_report(config, require(SHARED_ZIP)) == (4, 72)
