"""``milvus-rag doctor``: each check, its failures and their one-line reasons."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cli_commands import _ingest, run
from tests.support.openai_server import FakeOpenAIServer, closed_port

# --------------------------------------------------------------------------- doctor


def _doctor(config: Path, *extra: str) -> tuple[int, dict[str, list[str]]]:
    result = run("doctor", *extra, "--config", str(config))
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    by_check: dict[str, list[str]] = {}
    for line in lines[:-1]:
        status, name = line.split()[:2]
        by_check.setdefault(name, []).append(line)
        assert status in ("ok", "FAIL", "skip"), line
    assert re.fullmatch(r"(all \d+ checks passed|\d+ of \d+ checks failed)", lines[-1])
    return result.exit_code, by_check  # type: ignore[attr-defined]


@pytest.mark.slow
def test_doctor_all_ok(config: Path, faq_folder: Path, llm: FakeOpenAIServer) -> None:
    _ingest(config, faq_folder)
    code, checks = _doctor(config)
    assert code == 0, checks
    assert set(checks) == {"config", "env", "model", "milvus", "collection", "llm"}
    assert all(line.startswith("ok") for lines in checks.values() for line in lines)
    assert llm.requests[-1]["path"] == "/v1/models"
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer test-key"
    data = json.loads(run("doctor", "--json", "--config", str(config)).stdout)
    assert data["ok"] is True and {c["status"] for c in data["checks"]} == {"ok"}


@pytest.mark.slow
def test_doctor_a_dense_collection_under_the_hybrid_default(config: Path, faq_folder: Path) -> None:
    """ask and serve search a dense collection dense under retrieval.mode hybrid: doctor agrees."""
    _ingest(config, faq_folder, "--mode", "dense")
    code, checks = _doctor(config, "--offline")
    assert code == 0, checks
    (line,) = checks["collection"]
    assert "dense (retrieval.mode hybrid searches it dense; ingest --recreate" in line, line


def _failing(checks: dict[str, list[str]], name: str) -> str:
    (line,) = [li for li in checks[name] if li.startswith("FAIL")]
    assert " -> fix: " in line
    return line


@pytest.mark.slow
def test_doctor_names_an_unknown_variable(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(config, faq_folder)
    monkeypatch.setenv("MILVUS_RAG_RETREIVAL__TOP_K", "5")
    result = run("doctor", "--offline", "--config", str(config))
    assert result.exit_code == 1 and "warning:" not in result.stderr  # said once, in its line
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "env")
    assert "MILVUS_RAG_RETREIVAL__TOP_K" in line
    assert line.endswith("fix: rename it to MILVUS_RAG_RETRIEVAL__TOP_K")
    assert checks["llm"][0].startswith("skip")


def test_doctor_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  top_k: lots\n")
    code, checks = _doctor(bad, "--offline")
    assert code == 1
    assert "retrieval.top_k" in _failing(checks, "config")
    assert checks["milvus"][0].startswith("skip")


def test_doctor_model_files(config: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial-model"
    partial.mkdir()
    (partial / "model.onnx").write_bytes(b"x")
    data = yaml.safe_load(config.read_text())
    data["embedding"]["model_dir"] = str(partial)
    config.write_text(yaml.safe_dump(data))
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "model")
    assert "config.json" in line and "tokenizer.json" in line

    del data["embedding"]["model_dir"]  # the hub model, offline and not cached
    config.write_text(yaml.safe_dump(data))
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "model")
    assert "not in the Hugging Face cache" in line and "embedding.model_dir" in line


def test_doctor_milvus_missing_and_unreachable(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "milvus")
    assert "no Milvus Lite database" in line and "milvus-rag ingest" in line
    assert checks["collection"][0].startswith("skip")

    monkeypatch.setenv("MILVUS_RAG_MILVUS__TIMEOUT", "2")
    url = f"http://127.0.0.1:{closed_port()}"
    _, checks = _doctor(config, "--offline", "--uri", url)
    line = _failing(checks, "milvus")
    assert url in line and "cannot be reached" in line


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    """A Milvus Lite database held open by another process."""
    from tests.support.lite_server import lite_file_held

    with lite_file_held(tmp_path / "locked.db") as db:
        yield db


@pytest.mark.slow
def test_doctor_lite_file_locked(config: Path, locked_db: Path) -> None:
    _, checks = _doctor(config, "--offline", "--uri", str(locked_db))
    line = _failing(checks, "milvus")
    assert "open in another process" in line and "127.0.0.1:19530" in line  # how to serve it


@pytest.mark.slow
def test_doctor_collection_missing_and_other_model(
    config: Path, faq_folder: Path, tmp_path: Path
) -> None:
    from tests.support.tiny_model import make_tiny_model

    _ingest(config, faq_folder)
    _, checks = _doctor(config, "--offline", "--collection", "nothing_here")
    assert "does not exist" in _failing(checks, "collection")

    data = yaml.safe_load(config.read_text())
    data["embedding"]["model_dir"] = str(make_tiny_model(tmp_path / "other", seed=5))
    config.write_text(yaml.safe_dump(data))
    code, checks = _doctor(config, "--offline")
    line = _failing(checks, "collection")
    assert (
        code == 1 and "was built with model=" in line and "fix: re-ingest with --recreate" in line
    )


@pytest.mark.slow
def test_doctor_llm_failures(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(config, faq_folder)
    llm.script(status=401)
    _, checks = _doctor(config)
    line = _failing(checks, "llm")
    assert "rejected the key" in line and "TEST_LLM_KEY" in line and "test-key" not in line

    monkeypatch.delenv("TEST_LLM_KEY")
    _, checks = _doctor(config)
    assert "TEST_LLM_KEY is not set" in _failing(checks, "llm")

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("MILVUS_RAG_LLM__BASE_URL", url)
    code, checks = _doctor(config)
    line = _failing(checks, "llm")
    assert code == 1 and "cannot be reached" in line and "llm.base_url" in line

    monkeypatch.setenv("MILVUS_RAG_LLM__FALLBACKS", '["local"]')
    _, checks = _doctor(config, "--offline")
    assert [li.split()[0] for li in checks["llm"] + checks["fallback"]] == ["skip", "skip"]
