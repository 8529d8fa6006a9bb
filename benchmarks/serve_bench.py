"""Serving throughput with 1 and 2 workers: ``milvus-rag serve --workers N`` under load.

A benchmark, not a test. What it runs, all on this machine:

- ``milvus-lite server`` on loopback, holding the FAQ pages of the docs archive
  (``en/faq/*.md``) ingested with a real ONNX model (``--model-dir``);
- the local OpenAI-compatible test server (``tests/support/openai_server.py``) as the
  LLM, answering every completion after a fixed delay (``--llm-delay``, 200 ms);
- ``milvus-rag serve --workers N`` for each N of ``--workers`` (default 1 and 2), as
  a separate process, warmed up, then loaded by ``--clients`` (32) concurrent clients,
  each sending ``POST /v1/chat/completions`` (one question, no history: one LLM call)
  as soon as its previous answer arrives, for ``--duration`` seconds.

Per N: requests/s, latency p50 / p95, errors (any status but 200, or a failed
request: must be 0), the requests each worker answered (from the access log) and the
memory of the serving processes. Then the ratio of the requests/s to the first N's.
The machine's load average (``uptime``) is printed before and after: the CPU is
shared, so figures only compare runs made together.

With ``--mixed``: the cost of document scopes. The four FAQ pages go into four scopes
(one each); ``serve`` (one worker) runs twice, both times with one writer uploading a
new document every second: once with an admin key for every client (no scope filter),
once with each client holding a reader key of one scope (a filter on every search).
Clients alternate ``/v1/chat/completions`` and ``/retrieve/invoke``; every passage they
receive is checked against their scope (cross-scope rows: must be 0).

Usage::

    python benchmarks/serve_bench.py --mixed
    python benchmarks/serve_bench.py
    python benchmarks/serve_bench.py --model-dir ../shared/models/all-MiniLM-L6-v2-onnx \\
        --clients 32 --duration 30 --workers 1 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.support: the LLM server, milvus-lite server

from tests.support.lite_server import LiteServer, free_port  # noqa: E402
from tests.support.openai_server import FakeOpenAIServer  # noqa: E402

SHARED = REPO_ROOT.parent / "shared"
DEFAULT_MODEL = SHARED / "models" / "all-MiniLM-L6-v2-onnx"
DEFAULT_ZIP = SHARED / "data" / "milvus_docs_2.4.x_en.zip"
GLOB = "en/faq/*.md"
QUESTIONS = [
    "How is data stored in milvus?",
    "What is the maximum dimension of a vector in Milvus?",
    "Does Milvus support inserting and searching at the same time?",
    "Why do I get fewer than k vectors when searching?",
    "How much does Milvus cost?",
    "Can I use Milvus with other vector index libraries?",
    "What is the difference between FLAT and IVF_FLAT?",
    "How do I set the consistency level of a search?",
]
KEY_VAR = "SERVE_BENCH_LLM_KEY"


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "milvus_rag.cli", *args]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(serve: int, lite: int) -> dict[str, float]:
    """CPU seconds so far of the serving processes, milvus-lite server and this process
    (the clients and the LLM server)."""
    own = os.times()
    return {
        "serve": cpu_seconds(serve) + sum(cpu_seconds(pid) for pid in children(serve)),
        "milvus_lite": cpu_seconds(lite),
        "clients_and_llm": own.user + own.system,
    }


def children(pid: int) -> list[int]:
    """Worker processes of ``pid`` (spawned by multiprocessing, not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, clients: int, duration: float) -> dict[str, Any]:
    """``clients`` concurrent clients asking one question after another for ``duration``."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        stop_at = time.perf_counter() + duration

        async def one_client(number: int) -> None:
            asked = number
            while time.perf_counter() < stop_at:
                question = QUESTIONS[asked % len(QUESTIONS)]
                asked += 1
                body = {"messages": [{"role": "user", "content": question}]}
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if response.status_code != 200 or not response.json().get("sources"):
                    errors[f"HTTP {response.status_code}"] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p95_ms": 1000 * percentile(latencies, 0.95) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


FAQ_PAGES = ["operational_faq.md", "performance_faq.md", "product_faq.md", "troubleshooting.md"]


async def mixed_load(
    base: str, keys: list[tuple[str, set[str] | None]], writer: str, duration: float
) -> dict[str, Any]:
    """Clients (one per key) alternating the OpenAI endpoint and /retrieve, each passage
    checked against the client's pages (None: every page), while ``writer`` uploads."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    crossed = 0
    uploads = 0
    limits = httpx.Limits(max_connections=len(keys) + 2, max_keepalive_connections=len(keys) + 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        stop_at = time.perf_counter() + duration

        async def one_client(number: int, key: str, pages: set[str] | None) -> None:
            nonlocal crossed
            headers = {"Authorization": f"Bearer {key}"}
            asked = number
            while time.perf_counter() < stop_at:
                question = QUESTIONS[asked % len(QUESTIONS)]
                asked += 1
                started = time.perf_counter()
                if asked % 2:
                    path, body = (
                        "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": question}]},
                    )
                else:
                    path, body = "/retrieve/invoke", {"input": question}
                try:
                    response = await client.post(base + path, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1
                    continue
                data = response.json()
                found = data.get("sources") if "sources" in data else data.get("output")
                names = {Path(str(row.get("source"))).name for row in found or []}
                if pages is not None:
                    crossed += len({n for n in names if not n.startswith("upload-")} - pages)
                latencies.append(time.perf_counter() - started)

        async def upload() -> None:
            nonlocal uploads
            headers = {"Authorization": f"Bearer {writer}"}
            while time.perf_counter() < stop_at:
                text = f"# Upload {uploads}\n\nA note written during the benchmark, number {uploads}.\n"
                files = {"file": (f"upload-{uploads}.md", text.encode())}
                response = await client.post(
                    base + "/documents", files=files, data={"scope": "s0"}, headers=headers
                )
                if response.status_code != 202:
                    errors[f"upload HTTP {response.status_code}"] += 1
                uploads += 1
                await asyncio.sleep(1.0)

        started = time.perf_counter()
        await asyncio.gather(
            upload(), *(one_client(n, key, pages) for n, (key, pages) in enumerate(keys))
        )
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p95_ms": 1000 * percentile(latencies, 0.95) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "cross_scope_rows": crossed,
        "uploads": uploads,
    }


def run_mixed(config: Path, env: dict[str, str], work: Path, args: argparse.Namespace) -> int:
    """The scope filter's cost: the same load with an admin key and with scoped keys."""
    from milvus_rag.keys import KeysFile

    for number, page in enumerate(FAQ_PAGES):
        done = subprocess.run(
            cli(
                "ingest",
                str(args.zip),
                "--glob",
                f"en/faq/{page}",
                "--scope",
                f"s{number}",
                "--config",
                str(config),
            ),
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"ingest failed: {done.stderr[-2000:]}")
    keys_file = work / "keys.yaml"
    file = KeysFile(keys_file)
    admin = file.add("bench-admin", "admin", [])
    writer = file.add("bench-writer", "writer", ["s0"])
    readers = [file.add(f"reader-s{n}", "reader", [f"s{n}"]) for n in range(len(FAQ_PAGES))]
    env = {**env, "MILVUS_RAG_SERVER__KEYS_FILE": str(keys_file)}
    runs = {}
    for name, keys in (
        ("no scopes", [(admin, None)] * args.clients),
        (
            "scoped",
            [
                (readers[n % len(readers)], {FAQ_PAGES[n % len(readers)]})
                for n in range(args.clients)
            ],
        ),
    ):
        port = free_port()
        log = work / f"serve-{name.replace(' ', '-')}.log"
        argv = cli("serve", "--port", str(port), "--config", str(config))
        with log.open("wb") as stderr:
            proc = subprocess.Popen(argv, env=env, stderr=stderr, start_new_session=True)
        try:
            wait_healthy(proc, port, log)
            base = f"http://127.0.0.1:{port}"
            asyncio.run(mixed_load(base, keys, writer, args.warmup))
            runs[name] = asyncio.run(mixed_load(base, keys, writer, args.duration))
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    plain, scoped = runs["no scopes"], runs["scoped"]
    ratio = scoped["requests_per_s"] / plain["requests_per_s"]
    print(
        f"{args.clients} clients alternating /v1/chat/completions and /retrieve/invoke for "
        f"{args.duration:g} s, one writer uploading every second, LLM latency "
        f"{1000 * args.llm_delay:g} ms, {os.cpu_count()} cores, load {load_average()}"
    )
    print(
        f"{'run':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}{'crossed':>9}{'uploads':>9}"
    )
    for name, run in runs.items():
        print(
            f"{name:>10}{run['requests_per_s']:>9.1f}{run['p50_ms']:>9.0f}{run['p95_ms']:>9.0f}"
            f"{run['errors']:>8}{run['cross_scope_rows']:>9}{run['uploads']:>9}"
        )
    print(
        f"scoped / no scopes: {ratio:.2f}x requests/s, p95 {scoped['p95_ms'] / plain['p95_ms']:.2f}x"
    )
    if args.json:
        print(json.dumps({"runs": runs, "ratio": ratio}, indent=2))
    failed = any(run["errors"] or run["cross_scope_rows"] for run in runs.values())
    return 1 if failed else 0


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"serve did not answer /health: {log.read_text()[-2000:]}")


def run_serve(
    workers: int,
    config: Path,
    env: dict[str, str],
    work: Path,
    lite_pid: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = free_port()
    log = work / f"serve-{workers}.log"
    argv = cli("serve", "--workers", str(workers), "--port", str(port), "--config", str(config))
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, env=env, stderr=stderr, start_new_session=True)
    try:
        wait_healthy(proc, port, log)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        # Warm-up: every worker loads its model and opens Milvus on its first questions.
        warm = asyncio.run(load(url, args.clients, args.warmup))
        if warm["errors"]:
            raise SystemExit(f"warm-up errors with {workers} workers: {warm['error_kinds']}")
        marker = log.stat().st_size
        cpu_before = cpu_snapshot(proc.pid, lite_pid)
        figures = asyncio.run(load(url, args.clients, args.duration))
        cpu_after = cpu_snapshot(proc.pid, lite_pid)
        figures["cpu_ms_per_request"] = {
            name: round(
                1000 * (cpu_after[name] - cpu_before[name]) / max(figures["requests"], 1), 1
            )
            for name in cpu_before
        }
        served = Counter(
            re.findall(r"\[(\d+)\] POST /v1/chat/completions", log.read_bytes()[marker:].decode())
        )
        pids = children(proc.pid)
        figures["per_worker"] = sorted(served.values(), reverse=True) if workers > 1 else None
        figures["rss_mb"] = {
            "supervisor" if workers > 1 else "server": round(rss_mb(proc.pid)),
            **({"workers": [round(rss_mb(pid)) for pid in pids]} if workers > 1 else {}),
        }
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if "Traceback" in log.read_text():
        raise SystemExit(f"serve with {workers} workers logged a traceback: {log}")
    figures["workers"] = workers
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="ONNX model folder")
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="the docs archive")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=30, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=8, help="seconds of load before that")
    parser.add_argument("--llm-delay", type=float, default=0.2, help="LLM latency (seconds)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--mixed", action="store_true", help="the cost of document scopes (see above)"
    )
    args = parser.parse_args()
    for path in (args.model_dir / "model.onnx", args.zip):
        if not path.exists():
            raise SystemExit(f"{path} does not exist")

    with (
        tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp,
        FakeOpenAIServer(delay=args.llm_delay) as llm,
    ):
        work = Path(tmp)
        lite = LiteServer(work / "lite").start()
        try:
            config = work / "config.yaml"
            sections = {
                "milvus": {"uri": lite.uri, "collection": "serve_bench"},
                "embedding": {"model_dir": str(args.model_dir.resolve())},
                "llm": {
                    "base_url": llm.base_url,
                    "model": "bench-model",
                    "api_key_env": KEY_VAR,
                    "max_retries": 0,
                    "timeout": 60,
                },
            }
            config.write_text(yaml.safe_dump(sections))
            env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
            env.update({KEY_VAR: "bench-key", "HF_HUB_OFFLINE": "1", "GRPC_VERBOSITY": "NONE"})
            if args.mixed:
                env["MILVUS_RAG_SERVER__UPLOAD_DIR"] = str(work / "uploads")
                return run_mixed(config, env, work, args)
            ingest = subprocess.run(
                cli("ingest", str(args.zip), "--glob", GLOB, "--config", str(config), "--json"),
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
            )
            if ingest.returncode != 0:
                raise SystemExit(f"ingest failed: {ingest.stderr[-2000:]}")
            chunks = json.loads(ingest.stdout)["chunks_written"]
            before = load_average()
            assert lite.proc is not None
            runs = [run_serve(n, config, env, work, lite.proc.pid, args) for n in args.workers]
            after = load_average()
        finally:
            lite.stop()

    base = runs[0]["requests_per_s"]
    for run in runs:
        run["ratio"] = run["requests_per_s"] / base
    result = {
        "cores": os.cpu_count(),
        "clients": args.clients,
        "duration_s": args.duration,
        "llm_delay_ms": 1000 * args.llm_delay,
        "model": args.model_dir.name,
        "chunks": chunks,
        "load_before": before,
        "load_after": after,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.clients} clients on /v1/chat/completions for {args.duration:g} s per run, "
            f"LLM latency {1000 * args.llm_delay:g} ms, {chunks} chunks ({args.model_dir.name}) "
            f"in milvus-lite server, {os.cpu_count()} cores"
        )
        print(f"load before: {before}")
        print(f"{'workers':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}{'ratio':>8}")
        for run in runs:
            print(
                f"{run['workers']:>8}{run['requests_per_s']:>9.1f}{run['p50_ms']:>9.0f}"
                f"{run['p95_ms']:>9.0f}{run['errors']:>8}{run['ratio']:>7.2f}x"
                f"   per worker {run['per_worker'] or '-'}  RSS MB {run['rss_mb']}"
            )
            print(f"{'':>8}CPU ms per request: {run['cpu_ms_per_request']}")
        print(f"load after:  {after}")
    return 1 if any(run["errors"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
