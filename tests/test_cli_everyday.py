"""Everyday CLI paths: empty questions, unknown filter keys, one vocabulary for chunks,
quiet library logs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.cli import one_line_error
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run(*args: str, input: str | None = None) -> object:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("COLUMNS", "100")
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "cli.db", tiny_model_dir, llm)))
    return path


@pytest.mark.parametrize(
    ("command", "question", "expected"),
    [
        ("ask", "", "error: the question is empty: give the text to answer"),
        ("ask", " \t ", "error: the question is empty: give the text to answer"),
        ("search", "", "error: the query is empty: give the text to search for"),
        ("search", "   ", "error: the query is empty: give the text to search for"),
    ],
)
def test_an_empty_question_is_one_line_and_exit_2(
    config: Path, llm: FakeOpenAIServer, command: str, question: str, expected: str
) -> None:
    err = one_line_error(run(command, question, "--config", str(config)), code=2)
    assert err == expected
    assert not llm.chat_requests()  # nothing was asked


@pytest.mark.slow
def test_unknown_filter_keys_name_the_known_ones(config: Path, faq_folder: Path) -> None:
    ingested = run("ingest", str(faq_folder), "--glob", "en/faq/*.md", "--config", str(config))
    assert ingested.exit_code == 0, ingested.output  # type: ignore[attr-defined]
    question = "Where does Milvus store data?"
    for command in ("search", "ask"):
        err = one_line_error(
            run(command, question, "--filter", "colour=red", "--config", str(config)), code=2
        )
        assert err.startswith("error: --filter colour: no chunk has this key; the chunks have: ")
        known = err.split("the chunks have: ", 1)[1].split(", ")
        assert {"source", "format", "position"} <= set(known) and "text" not in known
    err = one_line_error(run("chat", "--filter", "colour=red", "--config", str(config)), code=2)
    assert err.startswith("error: --filter colour: no chunk has this key")
    found = run("search", question, "--filter", "format=markdown", "--json", "-c", str(config))
    assert found.exit_code == 0 and json.loads(found.stdout)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_one_vocabulary_for_chunks_and_views(
    config: Path, faq_folder: Path, make_settings: object
) -> None:
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app
    from milvus_rag.settings import load_settings

    ingested = run("ingest", str(faq_folder), "--glob", "en/faq/*.md", "--config", str(config))
    assert ingested.exit_code == 0, ingested.output  # type: ignore[attr-defined]
    summary = re.search(r"chunks written (\d+) \(\+(\d+) question views\)", ingested.stdout)  # type: ignore[attr-defined]
    assert summary, ingested.stdout  # type: ignore[attr-defined]
    chunks, views = int(summary[1]), int(summary[2])
    assert chunks > 0 and views > 0
    said = f"{chunks} chunks (+{views} question views)"

    listed = run("sources", "--config", str(config))
    assert said in listed.stdout.splitlines()[0]  # type: ignore[attr-defined]
    documents = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]  # type: ignore[attr-defined]
    assert sum(d["chunks"] for d in documents) == chunks
    assert sum(d["views"] for d in documents) == views

    doctor = run("doctor", "--offline", "--config", str(config))
    assert any(
        line.startswith("ok    collection") and said in line
        for line in doctor.stdout.splitlines()  # type: ignore[attr-defined]
    ), doctor.stdout  # type: ignore[attr-defined]

    with TestClient(create_app(load_settings(config))) as client:
        ready = client.get("/ready").json()
    assert ready["checks"]["collection"]["message"].endswith(f"holds {said}")


@pytest.mark.slow
def test_python_ingest_prints_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The library logs nothing on stderr unless asked (pymilvus's iterator notice)."""
    script = f"""
import sys
from pathlib import Path
from milvus_rag import ingest, load_settings
from tests.support.corpus import write_faq_folder

folder = write_faq_folder(Path({str(tmp_path)!r}) / "docs")
settings = load_settings(overrides={{
    "milvus": {{"uri": {str(tmp_path / "lib.db")!r}}},
    "embedding": {{"model_dir": {str(tiny_model_dir)!r}}},
}})
for _ in range(2):  # the second run reads the stored state through query iterators
    ingest(folder, settings, glob="en/faq/*.md")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
