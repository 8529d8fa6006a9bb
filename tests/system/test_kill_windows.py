"""kill -9 during the first ingest, a migrate to a server and a server ingest (its lock).

Issue 16's windows: a kill while the collection is being created, while a migrate
creates its target, and the moment the ingest lock is taken. Every round kills a
child process (a real SIGKILL) at an instant spread over the run: first around each
of the run's first Milvus writes (exact windows), then at ``i * step`` after the Lite
file or the lock appeared (step: a clean run's length over the rounds). Whatever the
instant, the rerun completes, equals a clean run, and the run after it writes nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from milvus_rag.store import META_COLLECTION
from tests.support.kill_ingest import (
    PRELOAD,
    KillPoint,
    collection_rows,
    in_child,
    ingest_dying,
    ingest_report,
    migrate_dying,
    rerun_ingest,
    rerun_migrate,
)

pytestmark = [pytest.mark.slow, pytest.mark.contract]

#: Rounds per scenario: kills around the first writes, then kills spread in time.
EXACT_ROUNDS = 6
SPREAD_ROUNDS = 5

WORDS = [
    "milvus",
    "stores",
    "vector",
    "data",
    "in",
    "segments",
    "flushed",
    "to",
    "object",
    "storage",
    "while",
    "etcd",
    "keeps",
]


@pytest.fixture(scope="module")
def context() -> BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(16)
    root = tmp_path_factory.mktemp("kill-docs")
    for number in range(10):
        sections = "".join(
            f"## Part {part}\n\n"
            + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            + ".\n\n"
            for part in range(rng.randint(2, 4))
        )
        (root / f"doc{number}.md").write_text(f"# Doc {number}\n\n{sections}")
    return root


@pytest.fixture(scope="module")
def lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support.lite_server import LiteServer

    server = LiteServer(tmp_path_factory.mktemp("kill-served")).start()
    yield server
    server.stop()


@pytest.fixture(
    params=["milvus-lite server", pytest.param("milvus 2.3.5 server", marks=pytest.mark.server)]
)
def server(request: pytest.FixtureRequest) -> Any:
    """The server a migrate or a server ingest writes to: ``milvus-lite server`` (fast),
    and a real Milvus standalone server (the ``server`` lane)."""
    if request.param == "milvus-lite server":
        return request.getfixturevalue("lite_server")
    return request.getfixturevalue("milvus_server")


def _reset(client: Any, collection: str, own_server: bool) -> None:
    """Back to before a first run: no collection, no lock, no records (on a server of
    this module's own, no metadata collection either)."""
    from milvus_rag.store import drop_collection

    drop_collection(client, collection)
    if client.has_collection(f"{collection}__ingest_lock"):
        client.drop_collection(f"{collection}__ingest_lock")
    if own_server and client.has_collection(META_COLLECTION):
        client.drop_collection(META_COLLECTION)


def _overrides(uri: str, model: Path, collection: str = "killed") -> dict[str, Any]:
    return {
        "milvus": {"uri": uri, "collection": collection},
        "embedding": {"model_dir": str(model)},
        "ingest": {"write_batch": 8, "chunk_tokens": 48, "chunk_overlap": 8},
    }


def _run(
    context: BaseContext,
    target: Callable[..., None],
    args: tuple[Any, ...],
    appeared: Callable[[], bool],
    delay: float | None,
) -> tuple[bool, float]:
    """Run ``target(*args)`` in a child; SIGKILL it ``delay`` seconds after ``appeared()``
    turns true (None: let it finish). Returns (killed, seconds from appearing to its end)."""
    child = context.Process(target=target, args=args)
    child.start()
    while child.is_alive() and not appeared():
        time.sleep(0.002)
    seen = time.monotonic()
    if delay is not None:
        child.join(delay)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(300)
    assert child.exitcode is not None, "the child hung"
    if child.exitcode != -signal.SIGKILL:
        assert child.exitcode == 0, f"the run failed (exit {child.exitcode})"
    return child.exitcode == -signal.SIGKILL, time.monotonic() - seen


def _same_rows(got: dict[str, Any], want: dict[str, Any], label: str) -> None:
    assert sorted(got) == sorted(want), f"{label}: ids differ"
    for key, (text, meta, vector) in got.items():
        assert (text, meta) == want[key][:2], f"{label}: {key}"
        np.testing.assert_allclose(vector, want[key][2], atol=1e-5)


#: Exact windows: around each of a run's first writes, counted over every write call
#: (creating the lock, the metadata collection, its index, the record, the collection,
#: its index, ...).
EXACT_POINTS = [
    KillPoint("any", 1, "after"),
    KillPoint("any", 2, "after"),
    KillPoint("any", 3, "before"),
    KillPoint("any", 3, "after"),
    KillPoint("any", 4, "after"),
    KillPoint("any", 5, "after"),
][:EXACT_ROUNDS]


def _rounds(
    context: BaseContext,
    target: Callable[..., None],
    args: Callable[[KillPoint | None], tuple[Any, ...]],
    reset: Callable[[], None],
    appeared: Callable[[], bool],
    check: Callable[[str], None],
    few: bool = False,
) -> list[str]:
    """Every round: reset, one killed run, then ``check`` (rerun, compare, run again).

    ``few``: every fifth round only (a real Milvus server, about 15 s a round: the same
    windows are covered on ``milvus-lite server`` with every round)."""
    reset()
    _, length = _run(context, target, args(None), appeared, None)  # a clean run's length
    killed = []
    plan: list[tuple[KillPoint | None, float | None]] = [(p, None) for p in EXACT_POINTS]
    step = length / SPREAD_ROUNDS
    plan += [(None, i * step) for i in range(SPREAD_ROUNDS)]
    if few:
        plan = plan[::5]
    for number, (point, delay) in enumerate(plan):
        reset()
        label = f"round {number} ({point or f'{delay:.3f} s after appearing'})"
        was_killed, _ = _run(context, target, args(point), appeared, delay)
        if was_killed:
            killed.append(label)
        check(label)
    print("killed:", killed)
    return killed


def test_kill_during_a_first_lite_ingest(
    context: BaseContext, corpus: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "first.db"
    clean = in_child(
        context, rerun_ingest, _overrides(str(tmp_path / "clean.db"), tiny_model_dir), str(corpus)
    )[1]

    def reset() -> None:
        shutil.rmtree(db, ignore_errors=True)
        if db.exists():
            db.unlink()

    def check(label: str) -> None:
        _, rows, again = in_child(
            context, rerun_ingest, _overrides(str(db), tiny_model_dir), str(corpus)
        )
        _same_rows(rows, clean, label)
        assert again["chunks_written"] == again["chunks_deleted"] == 0, label

    killed = _rounds(
        context,
        ingest_dying,
        lambda point: (_overrides(str(db), tiny_model_dir), str(corpus), point),
        reset,
        db.exists,
        check,
    )
    assert len(killed) >= EXACT_ROUNDS, killed


def test_kill_during_a_migrate_to_a_server(
    context: BaseContext, corpus: Path, tiny_model_dir: Path, tmp_path: Path, server: Any
) -> None:
    from pymilvus import MilvusClient

    source = _overrides(str(tmp_path / "source.db"), tiny_model_dir, "moved")
    in_child(context, ingest_report, source, str(corpus))
    clean = in_child(context, collection_rows, source)
    client = MilvusClient(uri=server.uri)

    own = server.name == "milvus-lite server"

    def reset() -> None:
        _reset(client, "moved", own)

    def appeared() -> bool:
        return bool(client.has_collection("moved__ingest_lock") or client.has_collection("moved"))

    def check(label: str) -> None:
        report, rows, again = in_child(context, rerun_migrate, source, server.uri)
        assert report["target_count"] == report["source_count"] == len(clean), label
        _same_rows(rows, clean, label)
        assert again["target_count"] == len(clean), label
        assert not client.has_collection("moved__ingest_lock"), label

    killed = _rounds(
        context,
        migrate_dying,
        lambda point: (source, server.uri, point),
        reset,
        appeared,
        check,
        few=not own,
    )
    client.close()
    assert len(killed) >= (2 if not own else EXACT_ROUNDS), killed


def test_kill_during_a_server_ingest(
    context: BaseContext, corpus: Path, tiny_model_dir: Path, tmp_path: Path, server: Any
) -> None:
    from pymilvus import MilvusClient

    served = _overrides(server.uri, tiny_model_dir, "served")
    clean = in_child(
        context,
        rerun_ingest,
        _overrides(server.uri, tiny_model_dir, "served_clean"),
        str(corpus),
    )[1]
    client = MilvusClient(uri=server.uri)

    own = server.name == "milvus-lite server"

    def reset() -> None:
        _reset(client, "served", own)

    def check(label: str) -> None:
        _, rows, again = in_child(context, rerun_ingest, served, str(corpus))
        _same_rows(rows, clean, label)
        assert again["chunks_written"] == again["chunks_deleted"] == 0, label
        assert not client.has_collection("served__ingest_lock"), label

    killed = _rounds(
        context,
        ingest_dying,
        lambda point: (served, str(corpus), point),
        reset,
        lambda: client.has_collection("served__ingest_lock"),
        check,
        few=not own,
    )
    client.close()
    assert len(killed) >= (2 if not own else EXACT_ROUNDS), killed
