"""`milvus_rag.sync.run`: a run's batched writes and its lock against concurrent ingests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from milvus_rag.errors import IngestLockedError
from milvus_rag.settings import Settings
from milvus_rag.store import connect
from milvus_rag.sync import ingest
from tests.support.sync import FILES, _docs

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_inserts_batched_by_bytes(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    sizes: list[int] = []
    original = MilvusClient.insert

    def spy(self: MilvusClient, collection_name: str, data: list, **kw: object) -> object:
        sizes.append(sum(len(r["text"].encode()) for r in data))
        return original(self, collection_name, data, **kw)

    monkeypatch.setattr(MilvusClient, "insert", spy)
    s = make_settings(ingest={"write_batch_bytes": 20_000, "write_batch": 1000})
    root = _docs(tmp_path / "docs", {f"f{i}.md": f"# F{i}\n\n" + "word " * 1500 for i in range(6)})
    ingest(root, s, splitter="tutorial")
    assert len(sizes) >= 3 and max(sizes) <= 20_000


def test_second_concurrent_ingest_is_refused(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    lite_server: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from milvus_rag.sync.run import Writer

    s = make_settings(milvus={"uri": lite_server.uri})  # type: ignore[attr-defined]
    root = _docs(tmp_path / "docs", FILES)
    entered, release = threading.Event(), threading.Event()
    original = Writer.flush

    def slow_flush(self: Writer) -> None:
        entered.set()
        release.wait(30)
        original(self)

    monkeypatch.setattr(Writer, "flush", slow_flush)
    errors: list[BaseException] = []
    first = threading.Thread(target=lambda: _run(ingest, root, s, errors))
    first.start()
    assert entered.wait(60)
    monkeypatch.setattr(Writer, "flush", original)
    with pytest.raises(IngestLockedError, match="another ingest"):
        ingest(root, s)
    release.set()
    first.join(60)
    assert not errors
    assert ingest(root, s).unchanged == 3  # lock released; nothing interleaved


def _run(func: Callable[..., object], root: Path, s: Settings, errors: list[BaseException]) -> None:
    try:
        func(root, s)
    except BaseException as exc:
        errors.append(exc)


def test_stale_lock_of_dead_process_is_broken(
    make_settings: Callable[..., Settings], tmp_path: Path, lite_server: object
) -> None:
    s = make_settings(milvus={"uri": lite_server.uri})  # type: ignore[attr-defined]
    root = _docs(tmp_path / "docs", FILES)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from milvus_rag.store import IngestLock

    client = connect(s.milvus)
    lock = IngestLock(client, s)
    lock.owner = f"{lock.owner.rpartition(':')[0]}:{dead.pid}"
    lock._create()
    assert ingest(root, s).added == 3
    _ = os
