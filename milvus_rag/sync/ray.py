"""The Ray engine of ingest (``ingest.engine: ray``, ``milvus-rag ingest --engine ray``).

The same rows and sync state as the local engine, with parsing, splitting and
embedding spread over a Ray cluster (``pip install 'milvus-rag[ray]'``):

* the driver (this process) lists the source, reads and hashes each file and
  skips the unchanged ones against the sync state stored in Milvus
  (:func:`milvus_rag.sync.read_file`, as the local engine);
* the changed files go to Ray Data in blocks of ``ingest.ray_file_batch`` files.
  Stage 1 (``map_batches``, tasks) parses, splits and turns each file into rows
  with the local engine's own :func:`milvus_rag.sync.plan_file`; stage 2
  (``map_batches`` on an actor pool of ``ingest.ray_actors`` actors, each loading
  the ONNX model once) embeds ``ingest.ray_embed_batch`` rows per call;
* the driver receives the rows with their vectors and writes them through the
  local engine's writer (``ingest.write_batch`` rows per insert); a file's stale
  rows are deleted only after all its new rows are written, so a crash or a kill
  at any point loses nothing and a rerun converges.

Writes go through the driver because one client inserts far faster than a
core embeds (README, "Past one machine"); it also means a Milvus Lite file
works (the single-node mode): only the driver ever opens it.

Without ``ingest.ray_address`` a local Ray starts with this machine's cores and
stops at the end, and never outlives this process: a small watchdog process kills
the Ray processes this one started if it dies without stopping them (``kill -9``);
with it, the job joins that cluster (every node needs
``milvus-rag[ray]`` and the model at the same ``embedding.model_dir``). A Ray
already initialised in this process (a notebook, tests) is used as it is.

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.sync import ingest

        settings = load_settings(overrides={"ingest": {"engine": "ray"}})
        print(ingest("milvus_docs.zip", settings).summary())
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import ConfigError, EmbeddingMismatchError, EngineError, MilvusRAGError
from milvus_rag.store import ID_FIELD, VECTOR_FIELD

if TYPE_CHECKING:
    import numpy as np

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.loaders.documents import Splitter
    from milvus_rag.settings import EmbeddingSettings, IngestSettings, Settings
    from milvus_rag.sync.run import FilesStep, IngestRun, PendingFile

__all__ = ["ACTOR_CPUS", "PARSE_CPUS", "RayEngine", "require_ray"]

_log = logging.getLogger(__name__)

#: CPUs an embedding actor reserves per ONNX thread, and a parse task: below one,
#: so that on every node a parse task fits beside one actor per core.
ACTOR_CPUS = 0.8
PARSE_CPUS = 0.2

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: A traceback's last line: ``OSError: disk full``.
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ")

# The kinds of records: a file's summary, a row to write, an error a worker met.
_FILE, _ROW, _ERROR = 0, 1, 2


def require_ray() -> ModuleType:
    """``ray`` with Ray Data, or ConfigError naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            f"the Ray engine needs Ray Data ({exc.name} is missing): pip install 'milvus-rag[ray]'"
        ) from exc
    return ray


class RayEngine:
    """The Ray engine's files step for :func:`milvus_rag.sync.ingest`, with Ray running.

    Created before anything else (so a missing Ray is reported first); entered
    before the driver connects to Milvus (Ray spawns its processes from a
    process without gRPC threads); Ray stops on exit when this started it.

    Raises:
        ConfigError: Ray is not installed, or cannot be started or reached.
    """

    def __init__(self, settings: Settings) -> None:
        self.session = _RaySession(settings.ingest.ray_address)

    def __enter__(self) -> FilesStep:
        self.session.start()
        return functools.partial(_ray_files, session=self.session)

    def __exit__(self, *exc: object) -> None:
        self.session.stop()


@dataclass(frozen=True)
class _Job:
    """What the workers need: no Milvus settings, no secrets."""

    origin: str
    scope: str
    ingest: IngestSettings
    embedding: EmbeddingSettings
    splitter: str
    chunker: str
    identity: dict[str, Any]


def _ray_files(run: IngestRun, session: _RaySession) -> None:
    from milvus_rag.sync.plan import read_file

    settings = run.settings
    blocks = _Blocks(session.ray, settings.ingest.ray_file_batch)
    for item in run.listing.files:
        run.report.files_seen += 1
        stored = run.state.get(item.path)
        read = read_file(item, stored, run.split.fingerprint, run.report)
        if read is None:
            run.progress.file_done(item.path)
            continue
        have = sorted(stored.ids) if stored is not None else []
        blocks.add({"path": item.path, "hash": read.source_hash, "have": have}, read.data)
    refs = blocks.finish()
    if not refs:
        return  # nothing changed
    job = _Job(
        origin=run.listing.origin,
        scope=run.scope,
        ingest=settings.ingest,
        embedding=settings.embedding,
        splitter=run.split.name,
        chunker=run.split.fingerprint,
        identity=run.embeddings.identity(),
    )
    with warnings.catch_warnings():
        # Fewer blocks than actors (a small change) is fine.
        warnings.filterwarnings("ignore", "The minimum number of concurrent actors")
        try:
            _write(run, _dataset(session.ray, refs, job))
        except session.ray.exceptions.RayError as exc:
            raise EngineError(
                f"the Ray job failed after its retries ({_root_cause(exc, session.ray)}); what "
                "was written is kept, and a rerun resumes from there"
            ) from exc


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (Ray's carry whole remote tracebacks)."""
    text = _ANSI.sub("", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _root_cause(exc: BaseException, ray: ModuleType) -> str:
    """The worker's own exception under Ray's wrappers, as ``Type: first line``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, ray.exceptions.RayError):
            return f"{type(current).__name__}: {_first_line(current)}"
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    # A task's own exception often reaches the driver only as text in Ray's message.
    for line in _ANSI.sub("", str(exc)).splitlines():
        found = _RAISED.match(line)
        if found and not found.group(1).startswith("ray."):
            return line.strip()[:200]
    return _first_line(exc)


class _RaySession:
    """Ray for one ingest: a local instance, a cluster, or the Ray already running."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.started = False
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.ray = require_ray()

    def start(self) -> None:
        ray = self.ray
        _quiet(ray)
        if not ray.is_initialized():
            args: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.address:
                    ray.init(address=self.address, **args)
                else:
                    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **args)
            except Exception as exc:
                where = f"at {self.address}" if self.address else "on this machine"
                raise ConfigError(
                    f"Ray {where} cannot be started or reached ({_first_line(exc)}); check "
                    "--ray-address / ingest.ray_address"
                ) from exc
            self.started = True
            if not self.address:
                self.watchdog = _watch_driver()

    def stop(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
            self.watchdog = None


#: The watchdog (run with ``python -c``, standard library only): while the driver (argv[1])
#: lives, it notes the driver's descendant processes that are Ray's; once the driver is
#: gone, it ends those still running (SIGTERM, then SIGKILL). A process is known by its
#: pid and start time, so a reused pid is never hit.
_WATCHDOG = r"""
import os, signal, sys, time

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), fields[19], fields[0]
    except (OSError, IndexError, ValueError):
        return None

def is_ray(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False

def alive(pid, started):
    found = stat(pid)
    return found is not None and found[1] == started and found[2] != b"Z"

driver, me = int(sys.argv[1]), os.getpid()
first = stat(driver)
if first is None:
    sys.exit(0)
tracked = {}
while alive(driver, first[1]):
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = stat(int(name))
            if found is not None:
                parents[int(name)] = found
    for pid, (ppid, started, state) in parents.items():
        seen, up = set(), ppid
        while up not in (driver, 0, 1) and up in parents and up not in seen:
            seen.add(up)
            up = parents[up][0]
        if up == driver and pid != me and state != b"Z" and pid not in tracked and is_ray(pid):
            tracked[pid] = started
    time.sleep(0.5)
for sig in (signal.SIGTERM, signal.SIGKILL):
    left = [pid for pid, started in tracked.items() if alive(pid, started)]
    for pid in left:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    for _ in range(20):
        if not any(alive(pid, tracked[pid]) for pid in left):
            break
        time.sleep(0.25)
"""


def _watch_driver() -> subprocess.Popen[bytes] | None:
    """Start the watchdog that ends this process's local Ray once this process is gone.

    Linux only (it reads ``/proc``); elsewhere nothing is started.
    """
    if not os.path.isdir("/proc/self"):
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the driver's group: its signals are not ours
        )
    except OSError as exc:
        _log.warning(
            "no watchdog for the local Ray (%s): a killed ingest may leave it running", exc
        )
        return None


def _quiet(ray: ModuleType) -> None:
    """The CLI draws its own progress; Ray Data's bars and banners would interleave."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    # A failed task is raised to the caller as one EngineError (with its cause); Ray
    # Data would also log it, traceback included.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class _Blocks:
    """Changed files packed into Arrow blocks put in Ray's object store.

    The driver holds at most one block; the object store spills to disk past
    its memory.
    """

    def __init__(self, ray: ModuleType, files: int) -> None:
        self.ray = ray
        self.files = files
        self.meta: list[str] = []
        self.data: list[bytes] = []
        self.refs: list[Any] = []

    def add(self, meta: dict[str, Any], data: bytes) -> None:
        self.meta.append(json.dumps(meta))
        self.data.append(data)
        if len(self.meta) >= self.files:
            self._put()

    def finish(self) -> list[Any]:
        self._put()
        return self.refs

    def _put(self) -> None:
        if not self.meta:
            return
        import pyarrow as pa

        table = pa.table({"meta": pa.array(self.meta), "data": pa.array(self.data, pa.binary())})
        self.refs.append(self.ray.put(table))
        self.meta, self.data = [], []


def _dataset(ray: ModuleType, refs: list[Any], job: _Job) -> Any:
    """Stage 1 (plan files, tasks) and stage 2 (embed rows, actor pool) over ``refs``."""
    threads = job.embedding.threads or 1
    cpus = float(ray.cluster_resources().get("CPU", 0))
    actors = job.ingest.ray_actors or max(1, int(cpus // threads))
    need = actors * ACTOR_CPUS * threads + PARSE_CPUS
    if need > cpus + 1e-9:
        raise ConfigError(
            f"ingest.ray_actors {actors} needs {need:g} CPUs of Ray ({ACTOR_CPUS:g} per "
            f"actor and ONNX thread, {PARSE_CPUS:g} for parsing); the cluster has {cpus:g}"
        )
    dataset = ray.data.from_arrow_refs(refs)
    dataset = dataset.map_batches(
        _plan_block,
        batch_size=None,
        batch_format="pyarrow",
        fn_kwargs={"job": job},
        num_cpus=PARSE_CPUS,
        # Parsing costs a few percent of embedding: one task per 8 actors keeps up,
        # without a Python worker (and its imports) per spare CPU.
        compute=ray.data.TaskPoolStrategy(size=-(-actors // 8)),
    )
    return dataset.map_batches(
        _Embedder,
        batch_size=job.ingest.ray_embed_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"job": job},
        num_cpus=ACTOR_CPUS * threads,
    )


# --------------------------------------------------------------------------- on the workers


_SPLITTERS: dict[str, Splitter] = {}


def _splitter(job: _Job) -> Splitter:
    """The driver's splitter, rebuilt once per worker process."""
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.sync.plan import splitter_for

    key = f"{job.splitter}\0{job.chunker}\0{job.ingest.model_dump_json()}"
    if key in _SPLITTERS:
        return _SPLITTERS[key]
    split = splitter_for(job.ingest, embeddings_from_settings(job.embedding), job.splitter)
    if split.fingerprint != job.chunker:
        raise ConfigError(
            f"the Ray worker on {socket.gethostname()} chunks differently ({split.fingerprint}) "
            f"than the driver ({job.chunker}): install the same milvus-rag and tokenizer "
            f"({job.embedding.model_dir or job.embedding.tokenizer}) on every node"
        )
    _SPLITTERS[key] = split
    return split


def _plan_block(table: Any, job: _Job) -> dict[str, np.ndarray]:
    """Stage 1: a block of files -> one file record each, then one record per new row."""
    import numpy as np

    from milvus_rag.sync.plan import FileRead, plan_file

    try:
        split = _splitter(job)
    except MilvusRAGError as exc:
        return {"kind": np.array([_ERROR], np.int8), "record": np.array([_error_record(exc)])}
    kinds: list[int] = []
    records: list[str] = []
    metas, datas = table.column("meta").to_pylist(), table.column("data").to_pylist()
    for meta_text, data in zip(metas, datas, strict=True):
        meta = json.loads(meta_text)
        plan = plan_file(
            meta["path"],
            FileRead(data, meta["hash"]),
            job.origin,
            split,
            set(meta["have"]),
            job.ingest.parse_timeout,
            job.scope,
        )
        summary = {
            "path": plan.path,
            "hash": plan.source_hash,
            "chunker": plan.chunker,
            "stale": sorted(plan.stale),
            "skip": plan.skip,
            "warnings": plan.warnings,
            "count": len(plan.rows),
        }
        kinds.append(_FILE)
        records.append(json.dumps(summary))
        for row in plan.rows:
            kinds.append(_ROW)
            records.append(
                json.dumps({"path": plan.path, "fields": row.fields, "embed": row.embed})
            )
    return {"kind": np.array(kinds, dtype=np.int8), "record": np.array(records, dtype=object)}


def _load_model(job: _Job) -> MilvusModelEmbeddings:
    """The driver's embedding model, loaded on a worker and checked to be the same."""
    from milvus_rag.embeddings import embeddings_from_settings

    threads = job.embedding.threads or 1
    embeddings = embeddings_from_settings(job.embedding.model_copy(update={"threads": threads}))
    found = embeddings.identity()  # loads the model
    if found != job.identity:
        raise EmbeddingMismatchError(
            f"the Ray worker on {socket.gethostname()} loads another embedding model "
            f"({found}) than the driver ({job.identity}): install the same model at "
            f"{job.embedding.model_dir or job.embedding.model} on every node"
        )
    return embeddings


class _Embedder:
    """Stage 2, one per actor: loads the model once, embeds the row records' texts."""

    def __init__(self, job: _Job) -> None:
        self.error: MilvusRAGError | None = None
        self.dim = int(job.identity["dim"])
        try:
            self.embeddings = _load_model(job)
        except MilvusRAGError as exc:
            self.error = exc  # sent to the driver as a record (see _error_record)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        if self.error is not None:
            return self._failed(batch, self.error)
        kinds, records = batch["kind"], batch["record"]
        rows = np.flatnonzero(kinds == _ROW)
        vectors = np.zeros((len(kinds), self.dim), dtype=np.float32)
        if len(rows):
            texts = [json.loads(records[i])["embed"] for i in rows]
            try:
                vectors[rows] = np.asarray(self.embeddings.embed_documents(texts), np.float32)
            except MilvusRAGError as exc:
                return self._failed(batch, exc)
        return {"kind": kinds, "record": records, "vector": vectors}

    def _failed(self, batch: dict[str, np.ndarray], exc: MilvusRAGError) -> dict[str, np.ndarray]:
        import numpy as np

        return {
            "kind": np.array([_ERROR], dtype=np.int8),
            "record": np.array([_error_record(exc)], dtype=object),
            "vector": np.zeros((1, self.dim), dtype=np.float32),
        }


# --------------------------------------------------------------------------- on the driver


@dataclass
class _OpenFile:
    """A file whose rows are arriving (in any order, its file record included)."""

    pending: PendingFile
    ids: set[str] = field(default_factory=set)
    count: int | None = None


def _write(run: IngestRun, dataset: Any) -> None:
    """Hand the embedded rows to the writer; track each file until its rows are all in."""
    from milvus_rag.sync.plan import ChunkRow, FilePlan, settle_file
    from milvus_rag.sync.run import PendingFile

    open_files: dict[str, _OpenFile] = {}

    def opened(path: str) -> _OpenFile:
        if path not in open_files:
            open_files[path] = _OpenFile(PendingFile(path, set(), 0))
        return open_files[path]

    def close_if_done(path: str, entry: _OpenFile) -> None:
        if entry.count is not None and len(entry.ids) == entry.count:
            del open_files[path]

    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for kind, record, vector in zip(
            batch["kind"], batch["record"], batch["vector"], strict=True
        ):
            data = json.loads(record)
            if kind == _ERROR:
                raise _worker_error(data)
            path = data["path"]
            entry = opened(path)
            if kind == _FILE:
                if entry.count is not None:
                    continue  # a retried task's repeat
                plan = FilePlan(
                    path,
                    data["hash"],
                    data["chunker"],
                    stale=set(data["stale"]),
                    skip=data["skip"],
                    warnings=data["warnings"],
                )
                stale = settle_file(plan, run.state.get(path), run.report)
                entry.count = int(data["count"])
                if stale is not None:
                    entry.pending.stale = stale
                    entry.pending.remaining += entry.count
                    run.writer.track(entry.pending)
                    run.writer.add_rows(entry.pending, [])  # retires it when all is written
                run.progress.file_done(path)
            else:
                fields = data["fields"]
                if fields[ID_FIELD] in entry.ids:
                    continue  # a retried task's repeat
                entry.ids.add(fields[ID_FIELD])
                fields[VECTOR_FIELD] = vector.tolist()
                run.writer.add_rows(entry.pending, [ChunkRow(fields, "")])
            close_if_done(path, entry)
    if open_files:
        lost = sorted(open_files)[:3]
        raise EngineError(
            f"the Ray job returned incomplete files ({', '.join(lost)}); they stay as they were "
            "and a rerun writes them"
        )


def _error_record(exc: MilvusRAGError) -> str:
    """A worker's error as a record: Ray keeps only the text of exceptions it carries."""
    return json.dumps({"error": type(exc).__name__, "message": str(exc)})


def _worker_error(data: dict[str, Any]) -> MilvusRAGError:
    from milvus_rag import errors

    kind = getattr(errors, str(data.get("error")), None)
    if not (isinstance(kind, type) and issubclass(kind, MilvusRAGError)):
        kind = MilvusRAGError
    return kind(str(data.get("message")))
