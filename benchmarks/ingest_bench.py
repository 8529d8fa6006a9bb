"""Ingest benchmark: the tutorial's own pipeline vs ``milvus-rag ingest`` on the whole docs.

Runs, one after the other, each in a fresh process (so peak RSS is per pipeline):

1. the tutorial's code path: unzip, ``glob("en/**/*.md")``, ``text.split("# ")``,
   ``DefaultEmbeddingFunction.encode_documents`` one text at a time (pymilvus-model's
   ``OnnxEmbeddingFunction`` loaded from ``--model-dir``), ``MilvusClient.insert``;
2. ``milvus-rag ingest ZIP --splitter tutorial --recreate`` (the same chunks);
3. ``milvus-rag ingest ZIP --recreate`` (the default markdown splitter);
4. ``milvus-rag ingest ZIP`` again (nothing changed).

Prints chunks/s for 1 and 2 and their ratio, peak RSS of each, the seconds of 3
and 4, and the verdict against the targets: >= 5x the tutorial's chunks/s, the
default splitter's whole archive in under a third of the tutorial's time, and the
no-change rerun under 10% of the first ingest.

Usage::

    python benchmarks/ingest_bench.py --model-dir ../shared/models/all-MiniLM-L6-v2-onnx
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"

TUTORIAL = textwrap.dedent(
    """
    import json, sys, time, zipfile
    from glob import glob
    t0 = time.perf_counter()
    zip_path, model_dir, workdir, db = sys.argv[1:5]
    zipfile.ZipFile(zip_path).extractall(workdir)           # the tutorial unzips the archive
    from milvus_rag.embeddings import load_local_onnx_function
    from pymilvus import MilvusClient
    embedding_model = load_local_onnx_function(model_dir)    # DefaultEmbeddingFunction's class
    text_lines = []
    for file_path in sorted(glob(f"{workdir}/en/**/*.md", recursive=True)):
        with open(file_path, "r") as file:
            file_text = file.read()
        text_lines += file_text.split("# ")
    client = MilvusClient(uri=db)
    client.create_collection("my_rag_collection", dimension=embedding_model.dim,
                             metric_type="IP", consistency_level="Strong")
    data = []
    for i, line in enumerate(text_lines):
        data.append({"id": i, "vector": embedding_model.encode_documents([line])[0], "text": line})
    result = client.insert(collection_name="my_rag_collection", data=data)
    seconds = time.perf_counter() - t0
    print(json.dumps({"chunks": result["insert_count"], "seconds": seconds}))
    """
)


def _run(cmd: list[str], env: dict[str, str]) -> tuple[str, float, int]:
    """Run ``cmd``; return stdout, wall seconds and the child's own peak RSS in MiB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            last = err.read().strip().splitlines()[-1:]
            sys.exit(f"benchmark step failed ({' '.join(cmd[1:4])} ...): {last}")
        return out.read(), wall, usage.ru_maxrss // 1024  # Linux reports KiB


def _ingest(zip_path: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], float, int]:
    cmd = [sys.executable, "-m", "milvus_rag.cli", "ingest", str(zip_path), "--json", *args]
    out, wall, rss = _run(cmd, env)
    return json.loads(out), wall, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not args.zip.is_file():
        sys.exit(f"error: {args.zip} not found (pass --zip)")
    if not (args.model_dir / "model.onnx").is_file():
        sys.exit(f"error: {args.model_dir} holds no model.onnx")

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    env = {
        **os.environ,
        "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(args.model_dir.resolve()),
        "MILVUS_RAG_MILVUS__URI": str(work / "rag.db"),
        "MILVUS_RAG_MILVUS__COLLECTION": "bench",
        "HF_HUB_OFFLINE": "1",
    }
    try:
        out, _, tut_rss = _run(
            [
                sys.executable,
                "-c",
                TUTORIAL,
                str(args.zip),
                str(args.model_dir),
                str(work / "docs"),
                str(work / "tutorial.db"),
            ],
            env,
        )
        tutorial = json.loads(out.strip().splitlines()[-1])
        same, _, same_rss = _ingest(args.zip, env, "--splitter", "tutorial", "--recreate")
        default, _, default_rss = _ingest(args.zip, env, "--recreate")
        rerun, _, _ = _ingest(args.zip, env)
        # Memory must not grow with the corpus: a quarter of it (the user guide, whose chunks
        # are as long as any) against the whole archive, same splitter.
        env_part = {**env, "MILVUS_RAG_MILVUS__COLLECTION": "bench_part"}
        part, _, part_rss = _ingest(args.zip, env_part, "--glob", "en/userGuide/**", "--recreate")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tut_cps = tutorial["chunks"] / tutorial["seconds"]
    ours_cps = same["chunks_written"] / same["seconds"]
    figures = {
        "tutorial": {
            "chunks": tutorial["chunks"],
            "seconds": round(tutorial["seconds"], 1),
            "chunks_per_s": round(tut_cps, 1),
            "peak_rss_mib": tut_rss,
        },
        "milvus_rag_tutorial_splitter": {
            "chunks": same["chunks_written"],
            "seconds": round(same["seconds"], 1),
            "chunks_per_s": round(ours_cps, 1),
            "peak_rss_mib": same_rss,
        },
        "milvus_rag_default_splitter": {
            "chunks": default["chunks_written"],
            "seconds": round(default["seconds"], 1),
            "peak_rss_mib": default_rss,
        },
        "rerun_no_change": {
            "seconds": round(rerun["seconds"], 2),
            "chunks_written": rerun["chunks_written"],
        },
        "speedup_same_chunks": round(ours_cps / tut_cps, 2),
        "default_vs_tutorial_time": round(default["seconds"] / tutorial["seconds"], 3),
        "rerun_vs_first": round(rerun["seconds"] / default["seconds"], 3),
        "subset": {"chunks": part["chunks_written"], "peak_rss_mib": part_rss},
        "rss_whole_vs_subset": round(default_rss / part_rss, 3),
        "model_dir": str(args.model_dir),
        "cores": os.cpu_count(),
    }
    checks = {
        ">= 5x the tutorial's chunks/s on the same chunks": figures["speedup_same_chunks"] >= 5,
        "default splitter's whole archive < 1/3 of the tutorial's time": figures[
            "default_vs_tutorial_time"
        ]
        < 1 / 3,
        "no-change rerun < 10% of the first ingest": figures["rerun_vs_first"] < 0.10,
        "peak RSS flat in corpus size (whole <= 1.25x a quarter)": figures["rss_whole_vs_subset"]
        <= 1.25,
    }
    if args.json:
        print(json.dumps({**figures, "checks": checks}, indent=2))
        return
    print(f"model: {args.model_dir}  cores: {os.cpu_count()}")
    print(f"{'pipeline':<40}{'chunks':>8}{'seconds':>10}{'chunks/s':>10}{'peak RSS MiB':>14}")
    rows = [
        (
            "tutorial (split '# ', one at a time)",
            tutorial["chunks"],
            tutorial["seconds"],
            tut_cps,
            tut_rss,
        ),
        (
            "milvus-rag ingest --splitter tutorial",
            same["chunks_written"],
            same["seconds"],
            ours_cps,
            same_rss,
        ),
        (
            "milvus-rag ingest (markdown)",
            default["chunks_written"],
            default["seconds"],
            default["chunks_written"] / default["seconds"],
            default_rss,
        ),
    ]
    for name, chunks, seconds, cps, rss in rows:
        print(f"{name:<40}{chunks:>8}{seconds:>10.1f}{cps:>10.1f}{rss:>14}")
    print(
        f"{'milvus-rag ingest (no change)':<40}{rerun['chunks_written']:>8}{rerun['seconds']:>10.2f}"
    )
    print(
        f"{'milvus-rag ingest en/userGuide/** only':<40}{part['chunks_written']:>8}"
        f"{part['seconds']:>10.1f}{'':>10}{part_rss:>14}"
    )
    print(
        f"speedup on the same chunks {figures['speedup_same_chunks']}x; default/tutorial time "
        f"{figures['default_vs_tutorial_time']}; rerun/first {figures['rerun_vs_first']}; "
        f"peak RSS whole/quarter {figures['rss_whole_vs_subset']}"
    )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
