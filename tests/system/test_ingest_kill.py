"""kill -9 at random points of an ingest; every rerun converges to a clean ingest."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.kill_ingest import (
    KillPoint,
    collection_rows,
    in_child,
    ingest_report,
    ingest_then_die,
)

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
    "metadata",
    "and",
    "the",
    "proxy",
    "routes",
    "every",
    "query",
    "to",
    "query",
    "nodes",
    "that",
    "load",
    "sealed",
    "segments",
]


def _section(rng: random.Random, title: str) -> str:
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
        for _ in range(rng.randint(2, 18))
    ]
    return f"## {title}\n\n" + " ".join(sentences) + "\n\n"


def _file(rng: random.Random, name: str) -> str:
    return f"# {name}\n\n" + "".join(
        _section(rng, f"{name} part {i}") for i in range(rng.randint(2, 5))
    )


class Corpus:
    """A folder of generated markdown files that changes a little each round."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng, self.next = root, rng, 0
        root.mkdir()
        for _ in range(12):
            self.add()

    def add(self) -> None:
        name = f"doc{self.next:02d}"
        self.next += 1
        (self.root / f"{name}.md").write_text(_file(self.rng, name))

    def mutate(self) -> None:
        files = sorted(self.root.glob("*.md"))
        for path in self.rng.sample(files, k=min(len(files), self.rng.randint(2, 4))):
            path.write_text(_file(self.rng, path.stem))
        if self.rng.random() < 0.5:
            self.add()
        if self.rng.random() < 0.5 and len(files) > 8:
            self.rng.choice(files).unlink()


KINDS = [
    KillPoint("insert", 1, "before"),  # before the first insert
    KillPoint("insert", 2, "after"),  # mid-file: batches of 5 cut files
    KillPoint("file", 4, "after"),  # between files, rows buffered
    KillPoint("delete", 1, "after"),  # while stale chunks are deleted
    KillPoint("insert", 3, "after"),
    KillPoint("delete", 2, "before"),
    KillPoint("flush", 1, "before"),  # all written and deleted, not flushed
]


@pytest.mark.slow
@pytest.mark.contract
def test_kill_and_rerun_converges_to_a_clean_ingest(tmp_path: Path, tiny_model_dir: Path) -> None:
    rng = random.Random(20261201)
    corpus = Corpus(tmp_path / "docs", rng)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["milvus_rag.sync", "milvus_rag.embeddings", "pymilvus"])

    def overrides(db: Path, tokens: int) -> dict[str, Any]:
        return {
            "milvus": {"uri": str(db), "collection": "killed"},
            "embedding": {"model_dir": str(tiny_model_dir)},
            "ingest": {"write_batch": 5, "chunk_tokens": tokens, "chunk_overlap": 8},
        }

    db = tmp_path / "killed.db"
    killed: list[str] = []
    took: list[float] = []
    rounds = len(KINDS) + 3  # each chosen moment once, then three by the clock
    for round_no in range(rounds):
        tokens = 64 if (round_no // 4) % 2 == 0 else 40  # every 4 rounds: re-chunk everything
        if round_no:
            corpus.mutate()
        if round_no < len(KINDS):  # chosen kinds of moments, then moments chosen by a clock
            points = [KINDS[round_no % len(KINDS)]]
        else:  # somewhere in what a whole ingest took in the rounds before
            points = [KillPoint("timer", int(rng.uniform(0.1, 0.9) * max(took) * 1000))]
        if rng.random() < 0.4:  # the rerun is killed too
            points.append(KillPoint(rng.choice(["insert", "delete", "file"]), rng.randint(1, 3)))
        for point in points:
            child = context.Process(
                target=ingest_then_die, args=(overrides(db, tokens), str(corpus.root), point)
            )
            child.start()
            if point.kind == "timer":  # kill -9 from outside after n milliseconds
                child.join(point.n / 1000)
                if child.is_alive():
                    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(300)
            assert child.exitcode is not None, f"round {round_no}: ingest hung"
            if child.exitcode == -9:
                killed.append(str(point))
            else:
                assert child.exitcode == 0, f"round {round_no}: ingest failed ({point})"
        # Milvus Lite serves a file from the first process that opens it until that
        # process exits: every open happens in a child, so the next kill can open it.
        in_child(context, ingest_report, overrides(db, tokens), str(corpus.root))
        clean_db = tmp_path / f"clean{round_no}.db"
        clean_started = time.monotonic()
        in_child(context, ingest_report, overrides(clean_db, tokens), str(corpus.root))
        took.append(time.monotonic() - clean_started)  # a whole ingest, child start included
        got = in_child(context, collection_rows, overrides(db, tokens))
        want = in_child(context, collection_rows, overrides(clean_db, tokens))
        assert sorted(got) == sorted(want), f"round {round_no}: ids differ"
        for key, (text, meta, vector) in got.items():
            assert (text, meta) == want[key][:2], f"round {round_no}: {key}"
            np.testing.assert_allclose(vector, want[key][2], atol=1e-5)
        again = in_child(context, ingest_report, overrides(db, tokens), str(corpus.root))
        assert again["chunks_written"] == again["chunks_deleted"] == 0, f"round {round_no}"
        shutil.rmtree(clean_db, ignore_errors=True)
    assert len(killed) >= len(KINDS), killed
    assert {str(point) for point in KINDS} <= set(killed), killed
    assert any("timer" in point for point in killed), killed
