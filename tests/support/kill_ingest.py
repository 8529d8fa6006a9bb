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

__all__ = [
    "PRELOAD",
    "WRITES",
    "KillPoint",
    "collection_rows",
    "die_at",
    "in_child",
    "ingest_dying",
    "ingest_report",
    "ingest_then_die",
    "migrate_dying",
    "rerun_ingest",
    "rerun_migrate",
]


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


def die_at(point: KillPoint, names: tuple[str, ...]) -> None:
    """SIGKILL this process around the n-th call of one of ``MilvusClient``'s ``names``
    (``point.kind``), counted over all of them."""
    from pymilvus import MilvusClient

    calls = {"n": 0}

    def wrap(name: str) -> None:
        original = getattr(MilvusClient, name)

        def wrapper(self: MilvusClient, *args: Any, **kwargs: Any) -> Any:
            if name == point.kind or point.kind == "any":
                calls["n"] += 1
            hit = calls["n"] == point.n and (name == point.kind or point.kind == "any")
            if hit and point.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(self, *args, **kwargs)
            if hit and point.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(MilvusClient, name, wrapper)

    for name in names:
        wrap(name)


#: The Milvus calls that write (a kill around each is a window worth testing).
WRITES = (
    "create_collection",
    "create_index",
    "upsert",
    "insert",
    "delete",
    "flush",
    "drop_collection",
)


def ingest_dying(overrides: dict[str, Any], root: str, point: KillPoint | None) -> None:
    """Ingest ``root``; SIGKILLed around ``point`` (a write call) when given."""
    from milvus_rag.settings import load_settings
    from milvus_rag.sync import ingest

    if point is not None:
        die_at(point, WRITES)
    ingest(root, load_settings(overrides=overrides), prune=True)


def migrate_dying(overrides: dict[str, Any], target_uri: str, point: KillPoint | None) -> None:
    """Migrate the collection to ``target_uri``; SIGKILLed around ``point`` when given."""
    from milvus_rag.migrate import migrate
    from milvus_rag.settings import load_settings

    if point is not None:
        die_at(point, WRITES)
    settings = load_settings(overrides=overrides)
    migrate(settings, settings.milvus.model_copy(update={"uri": target_uri}))


def rerun_ingest(
    overrides: dict[str, Any], root: str
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Ingest ``root`` to the end, read every row, ingest again: (report, rows, report)."""
    first = ingest_report(overrides, root)
    rows = collection_rows(overrides)
    return first, rows, ingest_report(overrides, root)


def rerun_migrate(overrides: dict[str, Any], target_uri: str) -> tuple[Any, Any, Any]:
    """Migrate to the end, read every row of the target, migrate again:
    (report, rows, report)."""
    from milvus_rag.migrate import migrate
    from milvus_rag.settings import load_settings

    settings = load_settings(overrides=overrides)
    target = settings.milvus.model_copy(update={"uri": target_uri})
    report = migrate(settings, target).as_dict()
    target_overrides = {**overrides, "milvus": {**overrides["milvus"], "uri": target_uri}}
    rows = collection_rows(target_overrides)
    return report, rows, migrate(settings, target).as_dict()


#: Modules an ingest or a migrate imports: a forkserver that preloads them starts
#: children that do not import them each time.
PRELOAD = [
    "milvus_rag.sync",
    "milvus_rag.migrate",
    "milvus_rag.settings",
    "milvus_rag.embeddings",
    "milvus_rag.loaders.sources",
    "milvus_rag.loaders.splitters",
    "milvus_rag.loaders.formats",
    "pymilvus",
    "milvus_lite",
    "onnxruntime",
    "tokenizers",
    "langchain_core.documents",
    "langchain_text_splitters",
    "pydantic_settings",
]
