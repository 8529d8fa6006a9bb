"""Scale benchmark: how far Milvus Lite and a Milvus server go, and what Ray ingest adds.

Part 1, ``storage`` (no embedding cost): synthetic chunks with milvus-rag's own
schema (``store.create_collection``): 384-d vectors drawn around 1,000 random
centres (embeddings cluster; uniform noise on the sphere would make every
approximate index look bad) and normalised, short texts, a ``source`` field.
At each size (10k, 100k, 1M by default) in Milvus Lite (each engine given by
``--lite-python``: a venv's Python with Milvus Lite 2.5.1 or 3.x, in its own
process) and in the real Milvus 2.3.5 server (PyPI ``milvus``, a fresh server
per size): insert rows/s in ``ingest.write_batch`` batches, memory (RSS of the
process tree that holds the data: the Lite child process and its engine process /
the server's process tree), search latency p50 / p99 at k = 3, one query at a time, with FLAT, the
default (hybrid) mode's search where the engine has BM25 (dense + BM25 at once), and
on the server with HNSW and IVF_FLAT, each with its recall@3 against FLAT.
Every (backend, size) runs in its own child process. Sizes run smallest first;
a size whose time, extrapolated from the smaller ones, would pass ``--budget``
seconds is skipped and said so.

Part 2, ``ingest``: chunks/s of ``ingest`` on the same real chunks (a subset of
the docs archive, about 2,000 chunks, all-MiniLM-L6-v2) with the local engine
and with ``--engine ray`` with 1 and 2 embedding actors, each in a fresh
process, into a fresh Milvus Lite file. Ray's start is timed apart (it is paid
once per job, not per chunk). The ratio of 2 actors to 1 is the measured
scaling per core.

Usage::

    python benchmarks/scale_bench.py storage --sizes 10000 100000 1000000 --budget 900 \
        --lite-python venv-2.5/bin/python --lite-python venv-3x/bin/python
    python benchmarks/scale_bench.py ingest --model-dir ../shared/models/all-MiniLM-L6-v2-onnx
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support: the Milvus server the test suite starts

DEFAULT_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"
#: About 2,100 chunks: about, adminGuide, getstarted, integrations, reference, rerankers.
DEFAULT_GLOB = "en/[agir]*/**/*.md"
DIM = 384
QUERIES = 100
WARMUP = 10
#: Strong consistency waits for the server's time tick: fewer queries tell that.
STRONG_QUERIES = 30
CENTRES = 1000
#: Rows of the side collection that measures one insert at a time.
SINGLE_ROWS = 100_000
#: Words of a synthetic chunk's text (BM25 indexes them in hybrid collections).
TEXT_WORDS = 40
#: Approximate indexes on the server and their search parameters.
INDEXES = {
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 16}),
}


# --------------------------------------------------------------------------- part 1: storage


def _vectors(rng: Any, centres: Any, n: int) -> Any:
    import numpy as np

    picked = centres[rng.integers(0, len(centres), n)]
    points = picked + rng.normal(0, 0.6 / np.sqrt(DIM), (n, DIM)).astype(np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _tree_pids(root: int) -> list[int]:
    """``root`` and its descendants."""
    parents: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(pid)] = int(stat[1])
    tree = {root}
    for _ in range(8):  # a few levels deep is plenty
        tree |= {pid for pid, parent in parents.items() if parent in tree}
    return sorted(tree)


def _session_pids(sid: int) -> list[int]:
    """The processes of a session (the server was started in its own)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) == sid:
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def _latencies(
    client: Any, name: str, queries: Any, params: dict[str, Any], consistency: str = "Bounded"
) -> tuple[Any, list]:
    import numpy as np

    search = {
        "limit": 3,
        "anns_field": "vector",
        "search_params": params,
        "consistency_level": consistency,
    }
    for query in queries[:WARMUP]:
        client.search(name, [query.tolist()], **search)
    seconds, hits = [], []
    for query in queries:
        started = time.perf_counter()
        found = client.search(name, [query.tolist()], output_fields=["text"], **search)[0]
        seconds.append(time.perf_counter() - started)
        hits.append([hit["id"] for hit in found])
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}, hits


def _vocabulary(rng: Any, size: int = 5000) -> Any:
    """Made-up words; texts draw them Zipf-distributed, as natural language does."""
    import numpy as np

    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(size)])


def _hybrid_latencies(client: Any, name: str, queries: Any, texts: list[str]) -> dict[str, float]:
    """The default (hybrid) mode's search, as the retriever runs it: the BM25 search of
    the text in a worker thread while the dense search runs; both 3 rows with their text."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from milvus_rag.store import SPARSE_FIELD, VECTOR_FIELD, search_rows

    fields = ["id", "text", "$meta"]
    with ThreadPoolExecutor(1) as pool:

        def one(vector: Any, text: str) -> None:
            sparse = pool.submit(search_rows, client, name, SPARSE_FIELD, text, 3, None, fields)
            search_rows(client, name, VECTOR_FIELD, vector.tolist(), 3, None, fields)
            sparse.result()

        for vector, text in list(zip(queries, texts, strict=True))[:WARMUP]:
            one(vector, text)
        seconds = []
        for vector, text in zip(queries, texts, strict=True):
            started = time.perf_counter()
            one(vector, text)
            seconds.append(time.perf_counter() - started)
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True)) / (3 * len(exact))


def _wait_for_index(client: Any, name: str, rows: int, timeout: float = 7200) -> None:
    from milvus_rag.store import VECTOR_FIELD

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.describe_index(name, VECTOR_FIELD)
        if int(info.get("indexed_rows", 0)) >= rows and not int(info.get("pending_index_rows", 0)):
            return
        time.sleep(1)
    raise TimeoutError("index build did not finish")


def run_storage(
    backend: str, uri: str, size: int, server_sid: int | None, indexes: list[str]
) -> dict[str, Any]:
    """One backend at one size (in a child process): the figures as a dict.

    ``phases`` in the result: seconds of the part that every run has (``base``)
    and of each approximate index, for projecting the next size.
    """
    import numpy as np

    from milvus_rag.settings import IngestSettings, Settings, load_settings
    from milvus_rag.store import (
        VECTOR_FIELD,
        RowWriter,
        connect,
        create_collection,
        drop_collection,
        lite_engine,
        supports_bm25,
    )

    name = f"scale_{size}"

    def settings_for(collection: str) -> Settings:
        return load_settings(overrides={"milvus": {"uri": uri, "collection": collection}})

    settings = settings_for(name)
    batch = IngestSettings().write_batch  # what ingest inserts per call
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 1, (CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = _vectors(np.random.default_rng(11), centres, QUERIES)

    def rss() -> float:
        if server_sid is None:  # Milvus Lite 2.x runs its engine in a child process
            return _rss_mib(_tree_pids(os.getpid()))
        return _rss_mib(_session_pids(server_sid))

    began = time.perf_counter()
    client = connect(settings.milvus)
    # The default schema: hybrid (a BM25 field filled by Milvus) where the engine has BM25.
    hybrid = supports_bm25(client)
    create_collection(client, settings, {"model": "synthetic", "dim": DIM}, hybrid=hybrid)
    words = _vocabulary(np.random.default_rng(3))
    before = rss()

    def batches(count: int) -> Iterator[list[dict[str, Any]]]:
        for first in range(0, count, batch):
            n = min(batch, count - first)
            vectors = _vectors(rng, centres, n)
            drawn = rng.zipf(1.3, (n, TEXT_WORDS)) % len(words)
            yield [
                {
                    "id": f"{first + i:032x}",
                    "text": f"Synthetic chunk {first + i}: " + " ".join(words[drawn[i]]),
                    "vector": vectors[i].tolist(),
                    "source": f"docs/file{(first + i) // 20}.md",
                }
                for i in range(n)
            ]

    def insert(collection: str, count: int, in_flight: int) -> tuple[float, int]:
        """Rows/s of writing ``count`` rows (making them included: a copy reads them too)."""
        started = time.perf_counter()
        with RowWriter(client, collection, in_flight=in_flight) as writer:
            for rows in batches(count):
                writer.write(rows)
        return count / (time.perf_counter() - started), writer.in_flight

    # The data through milvus-rag's writer: what ingest and migrate send,
    # ``ingest.write_concurrency`` inserts in flight where the engine takes them.
    insert_rate, in_flight = insert(name, size, IngestSettings().write_concurrency)
    insert_s = size / insert_rate
    started = time.perf_counter()
    client.flush(name)
    flush_s = time.perf_counter() - started
    flat, exact = _latencies(client, name, queries, {})
    strong, _ = _latencies(client, name, queries[:STRONG_QUERIES], {}, consistency="Strong")
    if backend == "lite":
        engine = f"Lite {lite_engine()}"
    else:
        engine = f"server {client.get_server_version()}"
    out: dict[str, Any] = {
        "backend": backend,
        "engine": engine,
        "rows": size,
        "insert_s": round(insert_s, 1),
        "insert_rows_per_s": round(insert_rate),
        "insert_in_flight": in_flight,
        "flush_s": round(flush_s, 1),
        "rss_mib": round(rss()),
        "rss_growth_mib": round(rss() - before),
        "FLAT": {k: round(v, 2) for k, v in flat.items()},
        "FLAT_strong": {k: round(v, 2) for k, v in strong.items()},
    }
    if hybrid:
        texts = [" ".join(words[rng.zipf(1.3, 6) % len(words)]) for _ in range(QUERIES)]
        figures = _hybrid_latencies(client, name, queries, texts)
        out["hybrid"] = {k: round(v, 2) for k, v in figures.items()}
    # One insert at a time (the engine's own rate), after the figures above: a side
    # collection of up to SINGLE_ROWS rows, dropped after.
    single = f"{name}_single"
    create_collection(
        client, settings_for(single), {"model": "synthetic", "dim": DIM}, hybrid=hybrid
    )
    out["insert_one_at_a_time_rows"] = min(size, SINGLE_ROWS)
    out["insert_one_at_a_time_rows_per_s"] = round(insert(single, min(size, SINGLE_ROWS), 1)[0])
    drop_collection(client, single)
    out["phases"] = {"base": time.perf_counter() - began}
    for index in indexes:
        build, search = INDEXES[index]
        phase = time.perf_counter()
        client.release_collection(name)
        client.drop_index(name, VECTOR_FIELD)
        params = client.prepare_index_params()
        params.add_index(VECTOR_FIELD, index_type=index, metric_type="IP", params=build)
        started = time.perf_counter()
        client.create_index(name, params)
        _wait_for_index(client, name, size)
        client.load_collection(name)
        build_s = time.perf_counter() - started
        figures, hits = _latencies(client, name, queries, search)
        out[index] = {
            **{k: round(v, 2) for k, v in figures.items()},
            "build_s": round(build_s, 1),
            "recall_at_3": round(_recall(hits, exact), 3),
            "rss_mib": round(rss()),
            "params": {**build, **search},
        }
        out["phases"][index] = time.perf_counter() - phase
    client.close()
    out["peak_rss_mib_this_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    out["elapsed_s"] = round(time.perf_counter() - began, 1)
    return out


#: One core's scan of an n x DIM float32 matrix for the top 3 (numpy, one BLAS thread).
_SCAN = """
import sys, time
import numpy as np
n, dim = int(sys.argv[1]), int(sys.argv[2])
matrix = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
seconds = []
for i in range(25):
    started = time.perf_counter()
    np.argpartition(matrix @ matrix[i], -3)[-3:]
    seconds.append(time.perf_counter() - started)
print(sorted(seconds[5:])[10] * 1000)
"""


def scan_floor_ms(size: int) -> float:
    """p50 ms of one core reading every vector of ``size`` rows once (the floor of a
    single-threaded FLAT search on this machine: its memory bandwidth)."""
    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _SCAN, str(size), str(DIM)],
        env={**os.environ, **one},
        capture_output=True,
        text=True,
        check=True,
    )
    return round(float(done.stdout), 2)


def _child(args: list[str], python: str = sys.executable) -> dict[str, Any]:
    done = subprocess.run(
        [python, __file__, "_one", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def storage(
    sizes: list[int], backends: list[str], budget: float, lite_pythons: list[str]
) -> list[dict[str, Any]]:
    """Each backend at each size, smallest first, within ``budget`` seconds in all.

    ``lite_pythons``: one Milvus Lite run per Python (a venv with one engine each).

    A run is planned from the previous size's phases, scaled by the size ratio
    (index builds by 1.25 more): approximate indexes are dropped, HNSW first,
    then the whole run, until the projection fits what is left of the budget.
    """
    from tests.support.milvus_server import MilvusServer, milvus_server_command

    results: list[dict[str, Any]] = []
    began = time.monotonic()
    last: dict[str, dict[str, Any]] = {}  # the previous result per backend
    start_up = {"server": 60.0}  # the server's is measured below
    floors: dict[int, float] = {}  # scan_floor_ms by size
    runs = [(b, p) for b in backends for p in (lite_pythons if b == "lite" else [sys.executable])]
    for size in sorted(sizes):
        for backend, python in runs:
            key = f"{backend} {python}"
            start_up.setdefault(key, start_up.get(backend, 0.0))
            if backend == "server" and milvus_server_command() is None:
                results.append({"backend": backend, "rows": size, "skipped": "no milvus-server"})
                continue
            indexes = list(INDEXES) if backend == "server" else []
            left = budget - (time.monotonic() - began)
            notes = []
            if key in last:
                prior = last[key]
                while indexes and _projected(prior, size, start_up[key], indexes) > left:
                    dropped = indexes.pop(indexes.index("HNSW") if "HNSW" in indexes else -1)
                    minutes = _projected(prior, size, start_up[key], [*indexes, dropped]) / 60
                    notes.append(f"{dropped} skipped ({minutes:.0f} min in all with it)")
                minutes = _projected(prior, size, start_up[key], indexes) / 60
                if minutes * 60 > left:
                    reason = f"projected {minutes:.0f} min from {prior['rows']} rows; "
                    reason += f"{max(0, left) / 60:.0f} min of the budget left"
                    results.append(
                        {"backend": backend, "engine": prior["engine"], "rows": size}
                        | {"skipped": reason}
                    )
                    continue
            work = Path(tempfile.mkdtemp(prefix=f"scale-{backend}-"))
            try:
                started = time.monotonic()
                if backend == "lite":
                    args = ["lite", str(work / "scale.db"), str(size), "0", *indexes]
                    result = _child(args, python)
                else:
                    started = time.monotonic()
                    server = MilvusServer(work).start()
                    start_up[key] = time.monotonic() - started
                    try:
                        assert server.proc is not None
                        sid = str(os.getsid(server.proc.pid))
                        result = _child(["server", server.uri, str(size), sid, *indexes])
                    finally:
                        server.stop()
            finally:
                shutil.rmtree(work, ignore_errors=True)
            result["wall_s"] = round(time.monotonic() - started, 1)
            result["scan_floor_ms"] = floors.setdefault(size, scan_floor_ms(size))
            if notes:
                result["notes"] = notes
            last[key] = result
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    return results


def _projected(prior: dict[str, Any], size: int, start_up: float, indexes: list[str]) -> float:
    """Seconds a run at ``size`` would take, from the phases of a smaller one."""
    ratio = size / prior["rows"]
    phases = prior["phases"]
    return start_up + phases["base"] * ratio + sum(phases[i] * ratio * 1.25 for i in indexes)


def print_storage(results: list[dict[str, Any]]) -> None:
    print("search: k=3, one query at a time, Bounded consistency (Strong: FLAT only);")
    print("hybrid: the default mode's search, BM25 (in a thread) while FLAT dense searches;")
    print("insert/s: into the default schema (hybrid where the engine has BM25), through")
    print("  milvus-rag's writer (N inserts in flight); 1 at a time into a side collection")
    print("scan floor: one core reading every vector once for the top 3 (numpy, 1 thread)")

    def recall(value: Any) -> str:
        return value if isinstance(value, str) else f"{value:.3f}"

    head = (
        f"{'engine':<19}{'rows':>9}{'insert/s':>10}{'RSS MiB':>9}{'search':>12}"
        f"{'p50 ms':>10}{'p99 ms':>10}{'recall@3':>10}{'build s':>9}"
    )
    print(head)
    for r in results:
        engine = r.get("engine", r["backend"])
        if "skipped" in r:
            print(f"{engine:<19}{r['rows']:>9}  skipped: {r['skipped']}")
            continue
        print(
            f"{engine:<19}{r['rows']:>9}{r['insert_rows_per_s']:>10}{r['rss_mib']:>9}"
            f"{'FLAT':>12}{r['FLAT']['p50_ms']:>10}{r['FLAT']['p99_ms']:>10}{'1.000':>10}{'':>9}"
        )
        single, in_flight = r["insert_one_at_a_time_rows_per_s"], r["insert_in_flight"]
        print(
            f"{'':<19}{'':>9}  insert/s {r['insert_rows_per_s']} with {in_flight} in flight, "
            f"{single} one at a time ({r['insert_one_at_a_time_rows']} rows): "
            f"{r['insert_rows_per_s'] / single:.2f}x"
        )
        if "scan_floor_ms" in r:
            floor = r["scan_floor_ms"]
            print(
                f"{'':<19}{'':>9}  FLAT p50 {r['FLAT']['p50_ms']} ms, scan floor {floor} ms: "
                f"{r['FLAT']['p50_ms'] / floor:.2f}x"
            )
        rows = [("FLAT Strong", {**r["FLAT_strong"], "recall_at_3": 1.0, "build_s": ""})]
        if "hybrid" in r:
            rows.append(("hybrid", {**r["hybrid"], "recall_at_3": "-", "build_s": ""}))
        rows += [(index, r[index]) for index in INDEXES if index in r]
        for index, f in rows:
            print(
                f"{'':<19}{'':>9}{'':>10}{f.get('rss_mib', ''):>9}{index:>12}{f['p50_ms']:>10}"
                f"{f['p99_ms']:>10}{recall(f['recall_at_3']):>10}{f['build_s']:>9}"
            )
        for note in r.get("notes", []):
            print(f"{'':<19}{'':>9}  {note} projected")


# --------------------------------------------------------------------------- part 2: ingest


def run_ingest(
    zip_path: str, glob: str, model_dir: str, db: str, engine: str, actors: int
) -> dict[str, Any]:
    """One ingest (in a child process): chunks, seconds, Ray's start apart."""
    from milvus_rag.settings import load_settings
    from milvus_rag.sync import Progress, ingest

    writes: list[tuple[float, int]] = []  # (time, chunks) of each insert
    progress = Progress(chunks_written=lambda n: writes.append((time.perf_counter(), n)))
    ray_start = 0.0
    if engine == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
    settings = load_settings(
        overrides={
            "milvus": {"uri": db, "collection": "bench"},
            "embedding": {"model_dir": model_dir},
            "ingest": {"engine": engine, "ray_actors": actors or None},
        }
    )
    with _TreeCpu(os.getpid()) as cpu_meter:  # this process and Ray's (its descendants)
        report = ingest(zip_path, settings, glob=glob, progress=progress)
    cpu = cpu_meter.seconds
    # Steady state: from the first insert to the last (model loads and ramp-up excluded).
    if len(writes) > 2:
        steady = sum(n for _, n in writes[1:]) / (writes[-1][0] - writes[0][0])
    else:
        steady = report.chunks_per_second  # too few inserts to tell
    return {
        "engine": engine,
        "actors": actors,
        "chunks": report.chunks_written,
        "seconds": round(report.seconds, 1),
        "chunks_per_s": round(report.chunks_per_second, 1),
        "steady_chunks_per_s": round(steady, 1),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_chunk": round(1000 * cpu / report.chunks_written, 1),
        "ray_start_s": round(ray_start, 1),
    }


class _TreeCpu:
    """CPU seconds (user + system) used by a process and its descendants while in effect.

    Sampled every 0.2 s, so that processes that exit before the end (Ray Data stops
    its actors when a dataset is done) still count up to their last sample.
    """

    def __init__(self, root: int) -> None:
        import threading

        self.root = root
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def seconds(self) -> float:
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())

    def __enter__(self) -> _TreeCpu:
        self.first = self._sample()
        self.last = dict(self.first)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.last.update(self._sample())

    def _sample(self) -> dict[int, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(pid)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
        tree = {}
        for process, (_, cpu) in stats.items():
            node = process
            while node in stats and node != self.root:
                node = stats[node][0]
            if node == self.root:
                tree[process] = cpu
        return tree


def ingest_table(zip_path: Path, glob: str, model_dir: Path) -> list[dict[str, Any]]:
    results = []
    for engine, actors in (("local", 0), ("ray", 1), ("ray", 2)):
        work = Path(tempfile.mkdtemp(prefix="scale-ingest-"))
        try:
            args = [str(zip_path), glob, str(model_dir), str(work / "rag.db"), engine, str(actors)]
            result = _child(["ingest", *args])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    return results


def print_ingest(results: list[dict[str, Any]]) -> None:
    local = next(r for r in results if r["engine"] == "local")
    head = f"{'engine':<20}{'chunks':>8}{'seconds':>9}{'chunks/s':>10}{'steady/s':>10}"
    print(f"{head}{'vs local':>10}{'CPU ms/chunk':>14}")
    for r in results:
        label = "local" if r["engine"] == "local" else f"ray, {r['actors']} actor(s)"
        ratio = r["steady_chunks_per_s"] / local["steady_chunks_per_s"]
        print(
            f"{label:<20}{r['chunks']:>8}{r['seconds']:>9}{r['chunks_per_s']:>10}"
            f"{r['steady_chunks_per_s']:>10}{ratio:>10.2f}{r['cpu_ms_per_chunk']:>14}"
        )
    by_actors = {r["actors"]: r for r in results if r["engine"] == "ray"}
    if 1 in by_actors and 2 in by_actors:
        one, two = by_actors[1], by_actors[2]
        factor = two["steady_chunks_per_s"] / one["steady_chunks_per_s"]
        print(f"steady 2 actors / 1 actor: {factor:.2f} (per-core efficiency {factor / 2:.0%})")
        per_cpu = 1000 / two["cpu_ms_per_chunk"]
        print(
            f"CPU cost: {two['cpu_ms_per_chunk']} ms per chunk with Ray (2 actors) against "
            f"{local['cpu_ms_per_chunk']} ms local: {per_cpu:.1f} chunks per busy core-second"
        )
        print(f"Ray start (once per job, not in the seconds above): {one['ray_start_s']} s")


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":  # a child process
        kind, *rest = sys.argv[2:]
        if kind == "ingest":
            zip_path, glob, model_dir, db, engine, actors = rest
            result = run_ingest(zip_path, glob, model_dir, db, engine, int(actors))
        else:
            uri, size, sid, *indexes = rest
            result = run_storage(kind, uri, int(size), int(sid) or None, indexes)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    store = parts.add_parser("storage", help="synthetic chunks in Milvus Lite and a server")
    store.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    store.add_argument("--backends", nargs="+", default=["lite", "server"])
    store.add_argument(
        "--lite-python",
        action="append",
        help="a Python whose venv has the Milvus Lite to measure (repeat for each engine; "
        "default: this one)",
    )
    store.add_argument("--budget", type=float, default=900, help="seconds for the whole part")
    ing = parts.add_parser("ingest", help="local engine vs --engine ray on real chunks")
    ing.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    ing.add_argument("--glob", default=DEFAULT_GLOB)
    ing.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    for sub in (store, ing):
        sub.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    load = os.getloadavg()
    if args.part == "storage":
        pythons = args.lite_python or [sys.executable]
        results: list[dict[str, Any]] = storage(args.sizes, args.backends, args.budget, pythons)
        printer = print_storage
    else:
        if not args.zip.is_file() or not (args.model_dir / "model.onnx").is_file():
            sys.exit(f"error: {args.zip} or {args.model_dir}/model.onnx not found")
        results = ingest_table(args.zip, args.glob, args.model_dir)
        printer = print_ingest
    after = os.getloadavg()
    if args.json:
        print(json.dumps({"results": results, "load_before": load, "load_after": after}))
        return
    print(f"cores: {os.cpu_count()}  load average before: {load[0]:.2f}, after: {after[0]:.2f}")
    printer(results)


if __name__ == "__main__":
    main()
