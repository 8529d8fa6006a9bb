"""Two Milvus Lite engines: a database written by the other one is one line with the way out.

Milvus Lite 2.x (the compiled engine, a SQLite-backed file) and 3.x (pure Python, a
folder) cannot read each other's databases; `pip install` gives 2.5.1 on Linux and
macOS and 3.x elsewhere (README: Which Milvus Lite). The fast tests build the other
engine's layout by hand; the contract test has the other engine write a real database
when ``OTHER_ENGINE_PYTHON`` names a Python that has it (CI's second stack).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.store import lite_engine, lite_file_engine
from tests.conftest import base_config
from tests.support.cli import one_line_error
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()
INSTALLED = lite_engine()
OTHER_PYTHON = os.environ.get("OTHER_ENGINE_PYTHON")

needs_lite = pytest.mark.skipif(INSTALLED is None, reason="no Milvus Lite installed")


def _sqlite_database(path: Path) -> None:
    """A file laid out as Milvus Lite 2.x keeps its database: SQLite."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE collection_meta (name TEXT PRIMARY KEY, meta BLOB)")
        db.execute("INSERT INTO collection_meta VALUES ('test_docs', x'00')")


def _folder_database(path: Path) -> None:
    """A folder laid out as Milvus Lite 3.x keeps its database."""
    for part in ("collections/test_docs/partitions/_default/data", "databases", "wal"):
        (path / part).mkdir(parents=True)
    (path / "LOCK").touch()
    (path / "collections/test_docs/schema.json").write_text('{"fields": []}')


def _foreign_database(path: Path) -> str:
    """The other engine's layout at ``path``; returns that engine's major version."""
    assert INSTALLED is not None
    if INSTALLED.startswith("2."):
        _folder_database(path)
        return "3"
    _sqlite_database(path)
    return "2"


def _digest(path: Path) -> str:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode())
        if file.is_file():
            h.update(file.read_bytes())
    return h.hexdigest()


def test_the_layout_tells_the_engine(tmp_path: Path) -> None:
    _sqlite_database(tmp_path / "two.db")
    _folder_database(tmp_path / "three.db")
    (tmp_path / "empty.db").touch()
    (tmp_path / "empty_dir.db").mkdir()
    (tmp_path / "text.db").write_text("not a database")
    assert lite_file_engine(tmp_path / "two.db") == "2"
    assert lite_file_engine(tmp_path / "three.db") == "3"
    for unknown in ("missing.db", "empty.db", "empty_dir.db", "text.db"):
        assert lite_file_engine(tmp_path / unknown) is None


@needs_lite
@pytest.mark.parametrize(
    "args",
    [("search", "How is data stored?"), ("sources",), ("ingest", "{docs}"), ("delete", "x.md")],
)
def test_a_database_of_the_other_engine_is_one_line_with_the_way_out(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    args: tuple[str, ...],
) -> None:
    db = tmp_path / "other.db"
    written = _foreign_database(db)
    before = _digest(db)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text about Milvus.\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(db, tiny_model_dir, llm)))
    argv = [a.format(docs=docs) for a in args]
    result = runner.invoke(app, [*argv, "--config", str(config)], catch_exceptions=False)
    err = one_line_error(result, 1)
    assert f"written by Milvus Lite {written}.x" in err
    assert f"Milvus Lite {INSTALLED} cannot read" in err
    assert "ingest again" in err and "migrate" in err
    assert _digest(db) == before  # nothing written over the other engine's data


_CREATE = """
import sys
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[1])
client.create_collection("test_docs", dimension=4)
client.insert("test_docs", [{"id": i, "vector": [0.1 * i, 0.2, 0.3, 0.4]} for i in range(5)])
client.flush("test_docs")
client.close()
import milvus_lite, importlib.metadata as m
print(m.version("milvus-lite"))
"""


@pytest.mark.slow
@pytest.mark.contract
@needs_lite
@pytest.mark.skipif(not OTHER_PYTHON, reason="OTHER_ENGINE_PYTHON names no second engine stack")
def test_a_real_database_of_the_other_engine_is_one_line(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer
) -> None:
    assert OTHER_PYTHON is not None and INSTALLED is not None
    db = tmp_path / "other.db"
    made = subprocess.run(
        [OTHER_PYTHON, "-c", _CREATE, str(db)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr[-2000:]
    other = made.stdout.strip().splitlines()[-1]
    if other.split(".")[0] == INSTALLED.split(".")[0]:
        pytest.skip(f"OTHER_ENGINE_PYTHON runs the same engine ({other})")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(db, tiny_model_dir, llm)))
    for args in (["search", "How is data stored?"], ["sources"]):
        result = runner.invoke(app, [*args, "--config", str(config)], catch_exceptions=False)
        err = one_line_error(result, 1)
        assert f"written by Milvus Lite {other.split('.')[0]}.x" in err and "migrate" in err
