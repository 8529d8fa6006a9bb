"""`milvus_rag.store.rows`: an ingest that reads the stored rows back through query iterators
prints nothing (pymilvus's iterator notice); the row writer's writes in flight.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from milvus_rag.schema import ID_FIELD, SOURCE_FIELD, TEXT_FIELD, VECTOR_FIELD
from milvus_rag.settings import Settings
from milvus_rag.store import (
    RowWriter,
    connect,
    count_entities,
    flush_collection,
    lite_engine,
    takes_concurrent_writes,
)
from tests.support.store import _create

REPO = Path(__file__).resolve().parents[2]


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


# ----------------------------------------------------------------- writes in flight


def _rows(client: Any, collection: str, first: int, count: int) -> list[dict[str, Any]]:
    dim = next(
        f["params"]["dim"]
        for f in client.describe_collection(collection)["fields"]
        if f["name"] == VECTOR_FIELD
    )
    return [
        {
            ID_FIELD: f"row{first + i:05d}",
            TEXT_FIELD: f"row {first + i}",
            VECTOR_FIELD: [1.0] + [0.0] * (dim - 1),
            SOURCE_FIELD: "w.md",
        }
        for i in range(count)
    ]


@pytest.mark.slow
@pytest.mark.contract
def test_a_row_writer_keeps_writes_in_flight_and_reports_each_in_order(
    make_settings: Callable[..., Settings],
) -> None:
    """Up to ``in_flight`` inserts run at once where the engine takes them (Milvus Lite 2.x,
    servers); each batch's callback runs in the caller's thread, in order, once stored."""
    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    name = s.milvus.collection
    try:
        caller = threading.get_ident()
        done: list[tuple[int, int]] = []
        with RowWriter(client, name, in_flight=2) as writer:
            concurrent = (lite_engine() or "").startswith("2.")
            assert writer.in_flight == (2 if concurrent else 1)  # Lite 3.x: one at a time
            for batch in range(6):
                rows = _rows(client, name, batch * 50, 50)
                writer.write(rows, done=lambda b=batch: done.append((b, threading.get_ident())))
        assert [b for b, _ in done] == list(range(6))
        assert {thread for _, thread in done} == {caller}
        flush_collection(client, name)
        assert count_entities(client, name) == 1 + 300  # _create's row and the six batches
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.contract
def test_a_failed_write_is_raised_and_no_write_outlives_the_writer(
    make_settings: Callable[..., Settings],
) -> None:
    """A batch the engine refuses is raised to the caller; the batches after it report
    nothing, and leaving the block waits for every write still running."""
    s = make_settings()
    _create(s)
    client = connect(s.milvus)
    name = s.milvus.collection
    try:
        done: list[int] = []
        bad = _rows(client, name, 100, 5)
        bad[2][VECTOR_FIELD] = [1.0, 0.0]  # the wrong dimension
        writer = RowWriter(client, name, in_flight=2)
        with pytest.raises(Exception, match="(?i)dim"), writer:
            writer.write(_rows(client, name, 0, 5), done=lambda: done.append(0))
            writer.write(bad, done=lambda: done.append(1))
            writer.write(_rows(client, name, 200, 5), done=lambda: done.append(2))
        assert done == [0]
        assert writer._pool is None  # stopped: nothing writes after the block
        flush_collection(client, name)
        stored = count_entities(client, name)
        assert stored in (1 + 5, 1 + 10)  # the good batches; never a row of the bad one
    finally:
        client.close()


def test_takes_concurrent_writes_by_what_the_engine_says() -> None:
    """Servers and Milvus Lite 2.x (which answers UNIMPLEMENTED) take concurrent inserts;
    Milvus Lite 3.x numbers its writes without a lock, so a writer sends one at a time."""

    class Engine:
        def __init__(self, answer: str | None) -> None:
            self.answer = answer

        def get_server_version(self) -> str:
            if self.answer is None:
                raise RuntimeError("<_InactiveRpcError: StatusCode.UNIMPLEMENTED>")
            return self.answer

    assert takes_concurrent_writes(Engine("v2.3.5"))  # type: ignore[arg-type]
    assert takes_concurrent_writes(Engine(None))  # type: ignore[arg-type]
    assert not takes_concurrent_writes(Engine("milvus_lite-3.2.2"))  # type: ignore[arg-type]
    assert RowWriter(Engine("milvus_lite-3.2.2"), "c", in_flight=4).in_flight == 1  # type: ignore[arg-type]
    assert RowWriter(Engine("v2.5.4"), "c", in_flight=4).in_flight == 4  # type: ignore[arg-type]
