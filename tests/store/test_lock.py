"""The ingest lock on a server: owner and lease from the first write, abandoned locks
taken over with one warning, ``doctor`` reporting a held lock, ``unlock`` releasing one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import IngestLockedError
from milvus_rag.settings import Settings
from milvus_rag.store import IngestLock, connect, ingest_lock_status
from milvus_rag.sync import ingest
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer

pytestmark = [pytest.mark.slow, pytest.mark.contract]


FILES = {"a.md": "# A\n\nalpha text\n", "b.md": "# B\n\nbeta text\n"}


@pytest.fixture(scope="module")
def lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support.lite_server import LiteServer

    server = LiteServer(tmp_path_factory.mktemp("served")).start()
    yield server
    server.stop()


@pytest.fixture
def served(
    make_settings: Callable[..., Settings], lite_server: Any, request: pytest.FixtureRequest
) -> Settings:
    return make_settings(milvus={"uri": lite_server.uri, "collection": request.node.name[5:40]})


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def _lock(s: Settings, owner: str, at: float | None = None) -> None:
    """A lock as a killed ingest leaves it: created, never renewed."""
    client = connect(s.milvus)
    lock = IngestLock(client, s)
    lock.owner = owner
    lock._create(at)
    client.close()


def _status(s: Settings) -> Any:
    client = connect(s.milvus)
    try:
        return ingest_lock_status(client, s.milvus.collection)
    finally:
        client.close()


def test_lock_names_its_owner_from_the_first_write(served: Settings, docs: Path) -> None:
    _lock(served, "elsewhere:4242")  # a live ingest on another host
    status = _status(served)
    assert status.owner == "elsewhere:4242" and status.abandoned is None
    assert status.age is not None and status.age < 3600
    with pytest.raises(IngestLockedError, match=r"another ingest \(elsewhere:4242") as info:
        ingest(docs, served)
    assert "milvus-rag unlock" in str(info.value)


def test_held_lock_is_renewed_and_released(served: Settings, docs: Path) -> None:
    client = connect(served.milvus)
    with IngestLock(client, served) as lock:
        status = ingest_lock_status(client, served.milvus.collection)
        assert status is not None and status.owner == lock.owner and status.abandoned is None
        assert status.renewed is not None
    assert ingest_lock_status(client, served.milvus.collection) is None
    client.close()


@pytest.mark.parametrize(
    ("owner", "age", "why"),
    [
        ("elsewhere:4242", 10_000.0, "lease expired"),  # no renewal for longer than the lease
        ("", 10_000.0, "names no owner"),
    ],
)
def test_abandoned_lock_is_taken_over_with_one_warning(
    served: Settings,
    docs: Path,
    caplog: pytest.LogCaptureFixture,
    owner: str,
    age: float,
    why: str,
) -> None:
    _lock(served, owner, time.time() - age)
    status = _status(served)
    assert status.abandoned is not None and why in status.abandoned
    with caplog.at_level(logging.WARNING, logger="milvus_rag"):
        assert ingest(docs, served).added == 2
    taken = [r for r in caplog.records if "taking over" in r.getMessage()]
    assert len(taken) == 1 and why in taken[0].getMessage()
    assert _status(served) is None


def test_lock_of_an_older_release_without_owner_is_taken_over(served: Settings, docs: Path) -> None:
    """Before this release the owner was written second: a kill left a lock with none."""
    from pymilvus import DataType

    client = connect(served.milvus)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    client.create_collection(f"{served.milvus.collection}__ingest_lock", schema=schema)
    client.close()
    assert ingest(docs, served).added == 2


# --------------------------------------------------------------------- doctor and unlock


@pytest.fixture
def config(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm_server: FakeOpenAIServer,
    served: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("COLUMNS", "200")
    data = base_config(tmp_path / "unused.db", tiny_model_dir, llm_server)
    data["milvus"] = {"uri": served.milvus.uri, "collection": served.milvus.collection}
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _lock_line(config: Path) -> str | None:
    result = _cli("doctor", "--offline", "--config", str(config))
    lines = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["lock"]]
    assert len(lines) <= 1
    return lines[0] if lines else None


def test_doctor_reports_a_held_lock(served: Settings, docs: Path, config: Path) -> None:
    assert ingest(docs, served).added == 2
    assert _lock_line(config) is None
    _lock(served, "elsewhere:4242")
    line = _lock_line(config)
    assert line is not None and line.startswith("ok") and "elsewhere:4242 for " in line
    client = connect(served.milvus)
    client.drop_collection(f"{served.milvus.collection}__ingest_lock")
    client.close()
    _lock(served, "elsewhere:4242", time.time() - 10_000)
    line = _lock_line(config)
    assert line is not None and line.startswith("FAIL") and "lease expired" in line
    assert "milvus-rag unlock" in line


def test_unlock_releases_a_lock(served: Settings, config: Path) -> None:
    result = _cli("unlock", "--config", str(config))
    assert result.exit_code == 0 and "no ingest lock on collection" in result.stdout
    _lock(served, "elsewhere:4242")  # its lease is current: kept without --force
    result = _cli("unlock", "--config", str(config))
    assert result.exit_code == 1 and "--force" in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert _status(served) is not None
    result = _cli("unlock", "--force", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    assert '"owner": "elsewhere:4242"' in result.stdout
    assert _status(served) is None
    _lock(served, "", time.time() - 10_000)  # abandoned: released without --force
    result = _cli("unlock", "--config", str(config))
    assert result.exit_code == 0 and result.stdout.startswith("released the ingest lock")
    assert _status(served) is None


def test_unlock_on_milvus_lite(config: Path, tmp_path: Path) -> None:
    result = _cli("unlock", "--config", str(config), "--uri", str(tmp_path / "x.db"))
    assert result.exit_code == 0 and "Milvus Lite" in result.stdout
