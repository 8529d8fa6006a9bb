"""Tutorial embedding path vs the accelerated one, on the tutorial's own chunks.

Times pymilvus-model's ``OnnxEmbeddingFunction`` (one text per ONNX run, padded
to the tokenizer's maximum length: the Milvus + Lepton AI tutorial's code path)
against :class:`milvus_rag.embeddings.MilvusModelEmbeddings` (length-sorted,
dynamically padded batches) with the same local model, in one process, and
checks the vectors agree.

Usage::

    python benchmarks/embed_bench.py --model-dir ../shared/models/all-MiniLM-L6-v2-onnx
    python benchmarks/embed_bench.py --model-dir DIR --zip PATH --repeats 5 --json
    python benchmarks/embed_bench.py --model-dir DIR --strict   # non-zero exit on a FAIL

Targets: documents >= 3x faster, a single query >= 10x faster, and every
chunk's cosine similarity between the two paths >= 0.99999.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO_ROOT.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
EXPECTED_CHUNKS = 72
QUERY = "How is data stored in milvus?"
QUERY_RUNS = 20
WARMUP_TEXT = "Milvus is a vector database."

DOCS_TARGET = 3.0
QUERY_TARGET = 10.0
COSINE_TARGET = 0.99999


@dataclass
class BenchResult:
    """Every figure one run produces (the ``--json`` output)."""

    model_dir: str
    zip: str
    chunks: int
    tokens_total: int
    tokens_max: int
    tokenizer_max_length: int
    batch_size: int
    repeats: int
    cpu_count: int | None
    onnx_intra_op_threads: int
    onnxruntime_version: str
    python: str
    tutorial_docs_seconds: float
    accelerated_docs_seconds: float
    tutorial_docs_per_second: float
    accelerated_docs_per_second: float
    docs_speedup: float
    min_cosine: float
    mean_cosine: float
    query_runs: int
    tutorial_query_ms: float
    accelerated_query_ms: float
    query_speedup: float
    query_cosine: float
    docs_pass: bool
    query_pass: bool
    cosine_pass: bool

    @property
    def all_pass(self) -> bool:
        return self.docs_pass and self.query_pass and self.cosine_pass


def load_tutorial_chunks(zip_path: Path) -> list[str]:
    """The tutorial's chunks: every ``en/faq/*.md`` (sorted), split on ``"# "``."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(
            name
            for name in archive.namelist()
            if name.startswith("en/faq/")
            and name.endswith(".md")
            and "/" not in name[len("en/faq/") :]
        )
        chunks: list[str] = []
        for name in names:
            chunks.extend(archive.read(name).decode("utf-8").split("# "))
    return chunks


def best_of(repeats: int, funcs: Sequence[Callable[[], Any]]) -> list[tuple[float, Any]]:
    """Best wall time (and last result) of each function, runs interleaved.

    Interleaving spreads any background load over both contenders.
    """
    best = [float("inf")] * len(funcs)
    results: list[Any] = [None] * len(funcs)
    for _ in range(repeats):
        for index, func in enumerate(funcs):
            start = time.perf_counter()
            results[index] = func()
            best[index] = min(best[index], time.perf_counter() - start)
    return list(zip(best, results, strict=True))


def median_of(runs: int, funcs: Sequence[Callable[[], Any]]) -> list[tuple[float, Any]]:
    """Median wall time (and last result) of each function, runs interleaved."""
    times: list[list[float]] = [[] for _ in funcs]
    results: list[Any] = [None] * len(funcs)
    for _ in range(runs):
        for index, func in enumerate(funcs):
            start = time.perf_counter()
            results[index] = func()
            times[index].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def row_cosines(left: Any, right: Any) -> np.ndarray:
    """Cosine similarity of each pair of rows."""
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


def run_bench(
    model_dir: Path,
    zip_path: Path,
    repeats: int = 3,
    batch_size: int = 8,
    threads: int | None = None,
) -> BenchResult:
    """Load both paths from ``model_dir``, warm them up, and time them."""
    import onnxruntime

    from milvus_rag.embeddings import MilvusModelEmbeddings, load_local_onnx_function

    chunks = load_tutorial_chunks(zip_path)
    assert len(chunks) == EXPECTED_CHUNKS, (
        f"expected {EXPECTED_CHUNKS} tutorial chunks, got {len(chunks)}"
    )

    tutorial = load_local_onnx_function(model_dir, threads)
    accelerated = MilvusModelEmbeddings(model_dir=model_dir, batch_size=batch_size, threads=threads)
    # Warm-up: loads the accelerated model and runs each session once.
    tutorial.encode_documents([WARMUP_TEXT])
    accelerated.embed_documents([WARMUP_TEXT])

    tokenizer = tutorial.tokenizer
    lengths = [len(ids) for ids in tokenizer(chunks, truncation=True)["input_ids"]]
    intra_op = int(tutorial.ort_session.get_session_options().intra_op_num_threads)

    (tut_docs_s, tut_vectors), (acc_docs_s, acc_vectors) = best_of(
        repeats,
        [
            lambda: tutorial.encode_documents(chunks),
            lambda: accelerated.embed_documents(chunks),
        ],
    )
    cosines = row_cosines(tut_vectors, acc_vectors)

    (tut_query_s, tut_query), (acc_query_s, acc_query) = median_of(
        QUERY_RUNS,
        [
            lambda: tutorial.encode_queries([QUERY]),
            lambda: accelerated.embed_query(QUERY),
        ],
    )
    query_cosine = float(row_cosines(tut_query, [acc_query])[0])

    docs_speedup = tut_docs_s / acc_docs_s
    query_speedup = tut_query_s / acc_query_s
    min_cosine = float(cosines.min())
    return BenchResult(
        model_dir=str(model_dir),
        zip=str(zip_path),
        chunks=len(chunks),
        tokens_total=sum(lengths),
        tokens_max=max(lengths),
        tokenizer_max_length=int(tokenizer.model_max_length),
        batch_size=batch_size,
        repeats=repeats,
        cpu_count=os.cpu_count(),
        onnx_intra_op_threads=intra_op,
        onnxruntime_version=onnxruntime.__version__,
        python=platform.python_version(),
        tutorial_docs_seconds=tut_docs_s,
        accelerated_docs_seconds=acc_docs_s,
        tutorial_docs_per_second=len(chunks) / tut_docs_s,
        accelerated_docs_per_second=len(chunks) / acc_docs_s,
        docs_speedup=docs_speedup,
        min_cosine=min_cosine,
        mean_cosine=float(cosines.mean()),
        query_runs=QUERY_RUNS,
        tutorial_query_ms=tut_query_s * 1000.0,
        accelerated_query_ms=acc_query_s * 1000.0,
        query_speedup=query_speedup,
        query_cosine=query_cosine,
        docs_pass=docs_speedup >= DOCS_TARGET,
        query_pass=query_speedup >= QUERY_TARGET,
        cosine_pass=min_cosine >= COSINE_TARGET,
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def format_report(result: BenchResult) -> str:
    """The human table and the final verdict line."""
    threads = (
        f"{result.onnx_intra_op_threads}"
        if result.onnx_intra_op_threads
        else "0 (onnxruntime default)"
    )
    lines = [
        f"model      {result.model_dir}",
        f"data       {result.chunks} chunks, {result.tokens_total} tokens "
        f"(max {result.tokens_max}; tutorial pads each to {result.tokenizer_max_length})",
        f"machine    os.cpu_count()={result.cpu_count}, ONNX intra_op_num_threads={threads}, "
        f"onnxruntime {result.onnxruntime_version}, Python {result.python}",
        f"settings   batch_size={result.batch_size}, best of {result.repeats}, "
        f"query median of {result.query_runs}",
        "",
        f"{'':<24}{'tutorial':>12}{'accelerated':>14}{'ratio':>10}",
        f"{'documents (s)':<24}{result.tutorial_docs_seconds:>12.3f}"
        f"{result.accelerated_docs_seconds:>14.3f}{result.docs_speedup:>9.2f}x",
        f"{'documents (chunks/s)':<24}{result.tutorial_docs_per_second:>12.1f}"
        f"{result.accelerated_docs_per_second:>14.1f}",
        f"{'query (ms, median)':<24}{result.tutorial_query_ms:>12.2f}"
        f"{result.accelerated_query_ms:>14.2f}{result.query_speedup:>9.2f}x",
        f"{'min cosine (per chunk)':<24}{result.min_cosine:>26.10f}",
        f"{'mean cosine':<24}{result.mean_cosine:>26.10f}",
        f"{'query cosine':<24}{result.query_cosine:>26.10f}",
        "",
        f"VERDICT: documents {result.docs_speedup:.2f}x >= {DOCS_TARGET:g}x "
        f"{_verdict(result.docs_pass)} | query {result.query_speedup:.2f}x >= "
        f"{QUERY_TARGET:g}x {_verdict(result.query_pass)} | min cosine "
        f"{result.min_cosine:.8f} >= {COSINE_TARGET} {_verdict(result.cosine_pass)}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark the tutorial's embedding path against MilvusModelEmbeddings."
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="folder with model.onnx and tokenizer"
    )
    parser.add_argument(
        "--zip", type=Path, default=DEFAULT_ZIP, help=f"Milvus docs zip (default {DEFAULT_ZIP})"
    )
    parser.add_argument("--repeats", type=int, default=3, help="document runs; best is kept")
    parser.add_argument("--batch-size", type=int, default=8, help="accelerated batch size")
    parser.add_argument(
        "--threads", type=int, default=None, help="ONNX intra-op threads for both paths"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model_dir: Path = args.model_dir.expanduser()
    zip_path: Path = args.zip.expanduser()
    if not (model_dir / "model.onnx").is_file():
        print(f"embed_bench: no model.onnx in model dir {model_dir}", file=sys.stderr)
        return 2
    if not zip_path.is_file():
        print(f"embed_bench: docs zip not found: {zip_path}", file=sys.stderr)
        return 2
    if args.repeats < 1 or args.batch_size < 1:
        print("embed_bench: --repeats and --batch-size must be >= 1", file=sys.stderr)
        return 2

    result = run_bench(model_dir, zip_path, args.repeats, args.batch_size, args.threads)
    if args.json:
        print(json.dumps({**asdict(result), "all_pass": result.all_pass}, indent=2))
    else:
        print(format_report(result))
    return 1 if args.strict and not result.all_pass else 0


if __name__ == "__main__":
    sys.exit(main())
