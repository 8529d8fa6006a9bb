"""What the CLI's tests share: the runner, ``run``, ingesting the FAQ corpus, zips of odd names."""

from __future__ import annotations

import zipfile
from pathlib import Path

from typer.testing import CliRunner

from milvus_rag.cli import app

runner = CliRunner()


def run(*args: str, input: str | None = None) -> object:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def _ingest_faq(config: Path, source: Path, *extra: str) -> object:
    glob = ("--glob", "en/faq/*.md", "--splitter", "tutorial")
    return run("ingest", str(source), *glob, *extra, "--config", str(config))


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return path


def _ingest(config: Path, source: Path, *extra: str) -> object:
    result = run("ingest", str(source), "--glob", "en/faq/*.md", *extra, "--config", str(config))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return result
