"""Run an ingest in a child process that SIGKILLs itself at a chosen point.

The kill is a real ``kill -9`` (the process gets no chance to clean up); only
the moment is chosen: around the n-th Milvus ``insert``, ``delete`` or
``flush`` call, or after the n-th file was read and split.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["KillPoint", "collection_rows", "in_child", "ingest_report", "ingest_then_die"]


@dataclass(frozen=True)
class KillPoint:
    """Where to die: ``kind`` is insert, delete, flush or file (``when`` before or after the
    n-th one), or timer (killed from outside after n milliseconds)."""

    kind: str
    n: int
    when: str = "after"

    def __str__(self) -> str:
        return f"{self.when} {self.kind} #{self.n}"


def ingest_then_die(overrides: dict[str, Any], root: str, point: KillPoint) -> None:
    """Ingest ``root`` with ``prune=True`` and SIGKILL this process at ``point``."""
    from pymilvus import MilvusClient

    from milvus_rag.settings import load_settings
    from milvus_rag.sync import Progress, ingest

    calls: dict[str, int] = {}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def tally(kind: str, when: str) -> None:
        if kind == point.kind and when == point.when and calls.get(kind) == point.n:
            die()

    def wrap(name: str) -> None:
        original = getattr(MilvusClient, name)

        def wrapper(self: MilvusClient, *args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            tally(name, "before")
            result = original(self, *args, **kwargs)
            tally(name, "after")
            return result

        setattr(MilvusClient, name, wrapper)

    for name in ("insert", "delete", "flush"):
        wrap(name)

    def file_done(path: str) -> None:
        calls["file"] = calls.get("file", 0) + 1
        tally("file", "after")

    ingest(
        root, load_settings(overrides=overrides), prune=True, progress=Progress(file_done=file_done)
    )


def ingest_report(overrides: dict[str, Any], root: str) -> dict[str, Any]:
    """Ingest ``root`` with ``prune=True`` to the end; the report as a dict."""
    from milvus_rag.settings import load_settings
    from milvus_rag.sync import ingest

    return ingest(root, load_settings(overrides=overrides), prune=True).as_dict()


def collection_rows(
    overrides: dict[str, Any],
) -> dict[str, tuple[str, dict[str, Any], list[float]]]:
    """Every stored row: id -> (text, metadata, vector); duplicate ids are an error."""
    from milvus_rag.settings import load_settings
    from milvus_rag.store import connect, load_collection

    settings = load_settings(overrides=overrides)
    client = connect(settings.milvus)
    name = settings.milvus.collection
    load_collection(client, name)
    rows = client.query(name, filter="", output_fields=["*"], limit=16384)
    out = {}
    for row in rows:
        meta = {k: v for k, v in row.items() if k not in ("id", "text", "vector")}
        out[row["id"]] = (row["text"], meta, list(row["vector"]))
    if len(out) != len(rows):
        raise AssertionError(f"{len(rows) - len(out)} duplicate ids")
    return out


def in_child(context: BaseContext, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` in a fresh child process (Milvus Lite files stay unopened here)."""
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(func, *args).result()
