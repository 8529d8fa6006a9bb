"""Start-up times: ``milvus-rag --help`` against a minimal typer app, and a cold
``milvus-rag search`` against the same command at an earlier commit.

1. ``--help``: a two-command typer app importing nothing else (written to a temp
   folder) and ``milvus-rag --help``, run alternately as fresh processes; the
   medians and their ratio. Target: ``milvus-rag --help`` <= 2x the minimal app.
2. Cold search: ``milvus-rag search QUESTION`` as a fresh process with the current
   code and with the code of ``--baseline`` (default: the commit before the issue-10
   start-up work), run alternately on the same collection; the medians and their
   ratio. Target: current <= 60% of the baseline. A breakdown of each (imports,
   model load, Milvus open, query), measured in a separate process per tree that
   makes the same calls as ``search``, shows where the time goes.

Both trees run from source (``PYTHONPATH`` on a folder laid out as the installed
package: ``milvus_rag/`` with ``chains/`` and ``loaders/`` inside), so neither pays
for an editable-install hook. The collection is built once, with the current code,
from a few files of the docs archive and a local ONNX model.

Usage::

    python benchmarks/startup_bench.py --model-dir ../shared/models/all-MiniLM-L6-v2-onnx
    python benchmarks/startup_bench.py --model-dir DIR --runs 10 --baseline 977b375 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO_ROOT.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
#: The last commit before the issue-10 start-up work (lazy imports, no transformers).
DEFAULT_BASELINE = "977b375"
QUESTION = "How is data stored in milvus?"
GLOB = "en/faq/*.md"

HELP_TARGET = 2.0
SEARCH_TARGET = 0.60

MINIMAL_APP = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str) -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


@app.command()
def bye(name: str) -> None:
    """Say goodbye."""
    typer.echo(f"bye {name}")


if __name__ == "__main__":
    app()
'''

# Runs in a fresh process with PYTHONPATH on one tree: the calls `milvus-rag search`
# makes, each phase timed. Prints one JSON line.
PHASES = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import milvus_rag.cli
    assert milvus_rag.cli.__file__.startswith(sys.argv[2]), milvus_rag.cli.__file__
    from milvus_rag.cli._common import _quiet_libraries
    from milvus_rag.settings import load_settings
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.embeddings import embeddings_from_settings
    import milvus_rag.store
    try:
        _quiet_libraries(True)
    except TypeError:  # the baseline's takes no argument
        _quiet_libraries()
    imported = time.perf_counter()
    settings = load_settings()
    embeddings = embeddings_from_settings(settings)
    embeddings.identity()  # loads the model (and its runtime)
    loaded = time.perf_counter()
    retriever = MilvusRAGRetriever.from_settings(settings, embeddings=embeddings)
    retriever.ensure_not_empty()
    opened = time.perf_counter()
    docs = retriever.invoke(sys.argv[1])
    queried = time.perf_counter()
    assert docs, "no passage found"
    print(json.dumps({
        "imports": imported - started,
        "model_load": loaded - imported,
        "milvus_open": opened - loaded,
        "query": queried - opened,
    }))
    """
)


def layout(source: Path, target: Path) -> Path:
    """``target/milvus_rag`` laid out as installed, its files linked from ``source``."""
    package = target / "milvus_rag"
    package.mkdir(parents=True)
    for item in (source / "milvus_rag").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for sub in ("chains", "loaders"):
        (package / sub).symlink_to(source / sub)
    return target


def baseline_tree(revision: str, workdir: Path) -> Path:
    """The files of ``revision`` (``git archive``), laid out as installed."""
    source = workdir / "baseline-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return layout(source, workdir / "baseline")


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one run of ``argv`` (output discarded; a failure stops the benchmark).

    Runs in the temp folder: ``python -c`` puts the working directory first on the
    path, and the repository's own ``milvus_rag/`` must not shadow either tree.
    """
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=env["BENCH_CWD"])
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")
    return elapsed


def alternate(a: list[str], b: list[str], env_a: dict, env_b: dict, runs: int) -> dict[str, Any]:
    """Run A and B in turn (one warm-up each, then ``runs`` pairs): medians and ratio."""
    timed(a, env_a)
    timed(b, env_b)
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(timed(a, env_a))
        times_b.append(timed(b, env_b))
    ratios = [x / y for x, y in zip(times_a, times_b, strict=True)]
    return {
        "a_median": statistics.median(times_a),
        "b_median": statistics.median(times_b),
        "a_range": [min(times_a), max(times_a)],
        "b_range": [min(times_b), max(times_b)],
        "ratio_median": statistics.median(ratios),
    }


def phases(tree: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    """Median of each phase over ``runs`` fresh processes."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PHASES, QUESTION, str(tree)],
            env={**env, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            cwd=env["BENCH_CWD"],
        )
        if out.returncode != 0:
            raise SystemExit(f"phase run in {tree} failed: {out.stderr.strip()[-500:]}")
        for key, value in json.loads(out.stdout.strip().splitlines()[-1]).items():
            samples.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="local ONNX model folder")
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="the docs archive")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        work = Path(tmp)
        current = layout(REPO_ROOT, work / "current")
        baseline = baseline_tree(args.baseline, work)
        (work / "minimal.py").write_text(MINIMAL_APP)
        base_env = {
            key: value for key, value in os.environ.items() if not key.startswith("MILVUS_RAG_")
        }
        env = {
            **base_env,
            "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(args.model_dir.resolve()),
            "MILVUS_RAG_MILVUS__URI": str(work / "bench.db"),
            "HF_HUB_OFFLINE": "1",
            "GRPC_VERBOSITY": "NONE",
            "BENCH_CWD": str(work),
        }
        cli = [sys.executable, "-c", "from milvus_rag.cli import main; main()"]
        cur_env = {**env, "PYTHONPATH": str(current)}
        base_env_tree = {**env, "PYTHONPATH": str(baseline)}

        timed([*cli, "ingest", str(args.zip), "--glob", GLOB, "--json"], cur_env)

        help_figures = alternate(
            [*cli, "--help"],
            [sys.executable, str(work / "minimal.py"), "--help"],
            cur_env,
            cur_env,
            args.runs,
        )
        search = [*cli, "search", QUESTION]
        search_figures = alternate(search, search, cur_env, base_env_tree, args.runs)
        breakdown = {
            "current": phases(current, env, args.runs),
            "baseline": phases(baseline, env, args.runs),
        }

    result = {
        "runs": args.runs,
        "baseline": args.baseline,
        "help": help_figures,
        "search": search_figures,
        "breakdown": breakdown,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    h, s = help_figures, search_figures
    print(f"{args.runs} timed runs of each command after one warm-up, alternating; medians")
    print(
        f"--help        milvus-rag {h['a_median']:.3f} s   minimal typer app "
        f"{h['b_median']:.3f} s   ratio {h['ratio_median']:.2f}x (target <= {HELP_TARGET:g}x)"
    )
    print(
        f"cold search   current {s['a_median']:.3f} s   baseline {args.baseline} "
        f"{s['b_median']:.3f} s   ratio {s['ratio_median']:.2f} (target <= {SEARCH_TARGET:g})"
    )
    print("search breakdown (seconds, medians of fresh processes making the same calls):")
    print(f"  {'':<10}{'imports':>9}{'model':>9}{'open':>9}{'query':>9}")
    for name, figures in breakdown.items():
        print(
            f"  {name:<10}{figures['imports']:>9.3f}{figures['model_load']:>9.3f}"
            f"{figures['milvus_open']:>9.3f}{figures['query']:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
