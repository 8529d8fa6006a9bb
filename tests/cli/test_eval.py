"""``milvus-rag eval``: the questions file (bad encodings, bad lines) and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.settings import Settings
from tests.support.cli import one_line_error
from tests.support.cli_commands import run


def test_eval_questions_file_not_utf8(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    data = b'{"question": "ok?", "sources": ["a.md"]}\n{"question": "caf\xe9?"}\n'
    bad.write_bytes(data)
    err = one_line_error(run("eval", str(bad), "--config", str(config)), code=2)
    assert str(bad) in err and "line 2" in err and "UTF-8" in err
    offset = data.index(b"\xe9")
    assert f"byte {offset} is 0xe9" in err


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json}", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"just a string"', "JSON object"),
        ('{"question": "q?"}', "no 'sources' key"),
        ('{"question": "", "sources": []}', "non-empty"),
        ('{"question": "q?", "sources": "a.md"}', "list of paths"),
    ],
)
def test_eval_questions_file_malformed_lines(
    config: Path, tmp_path: Path, line: str, needle: str
) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('\ufeff{"question": "ok?", "sources": ["a.md"]}\n\n' + line + "\n")
    err = one_line_error(run("eval", str(bad), "--config", str(config)), code=2)
    assert str(bad) in err and "line 3" in err and needle in err


@pytest.mark.slow
@pytest.mark.contract
def test_eval_command_json(hybrid_settings: Settings, tmp_path: Path) -> None:

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"question": "how to repair a car", "sources": ["guide/cars.md"]}) + "\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "milvus": hybrid_settings.milvus.model_dump(mode="json", exclude={"token"}),
                "embedding": {"model_dir": str(hybrid_settings.embedding.model_dir)},
            }
        )
    )
    result = CliRunner().invoke(
        app,
        ["eval", str(questions), "-k", "2", "--mode", "hybrid", "--json", "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["hit_at_k"] == 1.0 and data["k"] == 2 and data["mode"] == "hybrid"
    assert set(data["results"][0]["retrieved"][0]) == {"text", "source", "score"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    result = CliRunner().invoke(app, ["eval", str(bad), "--config", str(config)])
    assert result.exit_code == 2 and "line 1" in result.stderr
