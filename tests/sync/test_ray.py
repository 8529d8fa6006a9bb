"""The Ray engine (``ingest --engine ray``) against the local engine.

A local Ray instance (``ray.init(num_cpus=2)``, no dashboard) for the module;
Milvus is ``milvus-lite server`` on loopback and, where PyPI ``milvus`` is
installed, the real Milvus 2.3.5 server. The Ray engine must leave exactly the
collection the local engine leaves (ids, texts, metadata, vectors within float
tolerance, sync state), so that either engine's rerun says nothing changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError, EmbeddingMismatchError, EngineError
from milvus_rag.settings import Settings
from milvus_rag.sync import IngestReport, ingest
from tests.support.corpus import write_faq_folder
from tests.support.ingest_determinism import assert_same_collection
from tests.support.lite_server import LiteServer, ServerProcess

BAD_PDF = ("notes/broken.pdf", "not a readable PDF")
FILES = 29  # stored files of either version of the corpus


def write_corpus(root: Path, version: int = 1) -> Path:
    """About 30 small files: the FAQ (question views), guides, text, HTML and two bad ones.

    ``version`` 2 changes two files, deletes two and adds two; 1 undoes that.
    """
    write_faq_folder(root)
    guides = root / "guides"
    guides.mkdir(parents=True, exist_ok=True)
    for i in range(22):
        path = guides / f"guide{i:02d}.md"
        if version == 2 and i in (3, 4):
            path.unlink(missing_ok=True)
            continue
        extra = " Rewritten for version two." if version == 2 and i in (1, 2) else ""
        body = f"Guide {i} explains how segments are flushed and indexed.{extra} " * (3 + i % 5)
        path.write_text(
            f"# Guide {i}\n\n{body}\n\n## Setup {i}\n\n"
            f"```bash\npip install thing{i}\n```\n\nThen restart node {i}.\n"
        )
    for i in (30, 31):
        added = guides / f"guide{i}.md"
        if version == 2:
            added.write_text(f"# New guide {i}\n\nFresh text about {i}.\n")
        else:
            added.unlink(missing_ok=True)
    (root / "notes").mkdir(exist_ok=True)
    (root / "notes" / "plain.txt").write_text("Plain notes about vectors.\n\n" * 4)
    (root / "notes" / "page.html").write_text(
        "<html><body><h1>Page</h1><p>An HTML page about collections.</p></body></html>"
    )
    (root / BAD_PDF[0]).write_bytes(b"%PDF-1.4 this is not really a pdf")
    (root / "notes" / "image.bin").write_bytes(b"\x00\x01")
    return root


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _start(server: ServerProcess) -> ServerProcess:
    try:
        return server.start()
    except RuntimeError as exc:
        pytest.skip(f"{server.name} could not start here: {exc}")


@pytest.fixture(scope="module")
def lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _start(LiteServer(tmp_path_factory.mktemp("lite-data")))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["milvus-lite server", "milvus 2.3.5 server"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Each Milvus a Ray engine writes to over the network."""
    if request.param == "milvus-lite server":
        yield request.getfixturevalue("lite_server")
        return
    yield request.getfixturevalue("milvus_server")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture
def on(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings for ``collection`` on ``server`` (None: the test's Lite file) with ``engine``."""

    def build(
        server: ServerProcess | None, collection: str, engine: str, **ingest_keys: Any
    ) -> Settings:
        milvus: dict[str, Any] = {"collection": collection}
        if server is not None:
            milvus["uri"] = server.uri
        return make_settings(milvus=milvus, ingest={"engine": engine, **ingest_keys})

    return build


def _counts(report: IngestReport) -> tuple[Any, ...]:
    return (
        report.files_seen,
        report.unchanged,
        report.added,
        report.updated,
        report.deleted,
        report.skipped,
        report.chunks_written,
        report.chunks_deleted,
        sorted(report.skipped_files),
        sorted(report.warnings),
    )


def _assert_nothing_changed(source: Path, settings: Settings, files: int) -> None:
    report = ingest(source, settings)
    assert not report.changed, report.summary()
    assert report.unchanged == files


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
@pytest.mark.ray
def test_same_rows_and_state_as_the_local_engine(
    ray_cluster: Any,
    server: ServerProcess,
    on: Callable[..., Settings],
    corpus: Path,
) -> None:
    local, ray = on(server, "local_docs", "local"), on(server, "ray_docs", "ray")
    want = ingest(corpus, local, recreate=True)
    got = ingest(corpus, ray, recreate=True)

    assert _counts(got) == _counts(want)
    assert got.added == FILES and got.chunks_written > 60  # FAQ, guides, text, HTML
    reasons = dict(got.skipped_files)
    assert reasons[BAD_PDF[0]].startswith(BAD_PDF[1])  # the bad file is skipped and reported
    assert reasons["notes/image.bin"] == "unsupported file type"
    assert_same_collection(ray, local)

    # Each engine's rerun on the other's collection says nothing changed (and on its own,
    # in the tests below).
    _assert_nothing_changed(corpus, on(server, "ray_docs", "local"), FILES)
    _assert_nothing_changed(corpus, on(server, "local_docs", "ray"), FILES)


@pytest.mark.slow
@pytest.mark.ray
def test_updates_and_prune_work_across_engines(
    ray_cluster: Any,
    server: ServerProcess,
    on: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    source = write_corpus(tmp_path / "docs")
    ingest(source, on(server, "mixed", "local"), recreate=True)

    write_corpus(source, version=2)  # 2 changed, 2 deleted, 2 added
    report = ingest(source, on(server, "mixed", "ray"), prune=True)
    assert (report.updated, report.deleted, report.added) == (2, 2, 2)
    fresh = on(server, "fresh_v2", "local")
    ingest(source, fresh, recreate=True)
    assert_same_collection(on(server, "mixed", "ray"), fresh)

    write_corpus(source, version=1)  # and back, by the local engine
    report = ingest(source, on(server, "mixed", "local"), prune=True)
    assert (report.updated, report.deleted, report.added) == (2, 2, 2)
    fresh = on(server, "fresh_v1", "ray")
    ingest(source, fresh, recreate=True)
    assert_same_collection(on(server, "mixed", "local"), fresh)
    _assert_nothing_changed(source, on(server, "mixed", "ray"), FILES)


def _embedder_processes() -> dict[int, str]:
    """Ray Data's embedding actors on this machine: pid -> process title."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if "MapBatches(_Embedder)" in title:
            found[int(pid)] = title.strip()
    return found


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_actor_is_retried_and_the_result_is_the_same(
    ray_cluster: Any,
    lite_server: ServerProcess,
    on: Callable[..., Settings],
    corpus: Path,
) -> None:
    # One row per embedding call: many calls, so the kill lands in the middle of the work.
    ray = on(lite_server, "killed", "ray", ray_embed_batch=1, ray_file_batch=1)
    killed: list[tuple[int, str]] = []
    done = threading.Event()

    def kill_a_busy_actor() -> None:
        while not done.is_set() and not killed:
            for pid, title in _embedder_processes().items():
                if title.endswith(".submit"):  # executing a batch, not starting or idle
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, title))
                    break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_actor, daemon=True)
    killer.start()
    try:
        report = ingest(corpus, ray, recreate=True)
    finally:
        done.set()
        killer.join()
    assert killed, "no embedding actor was caught working"
    assert not Path(f"/proc/{killed[0][0]}").exists()

    local = on(lite_server, "not_killed", "local")
    assert _counts(report) == _counts(ingest(corpus, local, recreate=True))
    assert_same_collection(ray, local)
    _assert_nothing_changed(corpus, ray, report.added)


@pytest.mark.slow
@pytest.mark.ray
def test_a_lite_file_is_written_by_the_driver_alone(
    ray_cluster: Any, on: Callable[..., Settings], corpus: Path, tmp_path: Path
) -> None:
    ray = on(None, "lite_ray", "ray")
    assert ray.milvus.is_lite
    local = on(None, "lite_local", "local")
    assert _counts(ingest(corpus, ray)) == _counts(ingest(corpus, local))
    assert_same_collection(ray, local)
    _assert_nothing_changed(corpus, ray, FILES)


@pytest.mark.slow
@pytest.mark.ray
def test_cli_runs_on_the_cluster_at_ray_address(
    ray_cluster: Any,
    lite_server: ServerProcess,
    on: Callable[..., Settings],
    tiny_model_dir: Path,
    corpus: Path,
) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    env = {
        **os.environ,
        "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(tiny_model_dir),
        "MILVUS_RAG_MILVUS__URI": lite_server.uri,
        "MILVUS_RAG_MILVUS__COLLECTION": "cli_docs",
    }
    command = [sys.executable, "-m", "milvus_rag.cli", "ingest", str(corpus), "--engine", "ray"]
    command += ["--ray-address", address]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"added {FILES}," in done.stdout
    assert f"skipped {BAD_PDF[0]}: {BAD_PDF[1]}" in done.stderr

    local = on(lite_server, "cli_local", "local")
    ingest(corpus, local, recreate=True)
    assert_same_collection(on(lite_server, "cli_docs", "ray"), local)


def test_ray_engine_without_ray_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], faq_folder: Path
) -> None:
    settings = make_settings()
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray gives
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = CliRunner().invoke(
        app,
        ["ingest", str(faq_folder), "--engine", "ray", "--uri", settings.milvus.uri],
        env={"MILVUS_RAG_EMBEDDING__MODEL_DIR": str(settings.embedding.model_dir)},
    )
    assert result.exit_code == ConfigError.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'milvus-rag[ray]'" in lines[0]
    assert not Path(settings.milvus.uri).exists()  # stopped before touching Milvus


@pytest.mark.slow
@pytest.mark.ray
def test_workers_must_embed_with_the_drivers_model(
    ray_cluster: Any,
    on: Callable[..., Settings],
    corpus: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    from milvus_rag.embeddings import MilvusModelEmbeddings

    # The actors build the model from settings; the driver was handed another one.
    other = shutil.copytree(tiny_model_dir, tmp_path / "other-model")
    settings = on(None, "mismatch", "ray")
    with pytest.raises(EmbeddingMismatchError, match="loads another embedding model"):
        ingest(corpus, settings, embeddings=MilvusModelEmbeddings(model_dir=other))


def _always_fails(batch: dict[str, Any]) -> dict[str, Any]:
    raise OSError("disk on fire")


@pytest.mark.slow
@pytest.mark.ray
def test_a_job_that_keeps_failing_is_one_typed_error_and_loses_nothing(
    ray_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    on: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    import milvus_rag.sync.ray as ray_ingest

    source = write_corpus(tmp_path / "docs")
    settings = on(None, "failing", "ray")
    first = ingest(source, settings)
    write_corpus(source, version=2)  # changed files, which the failing job cannot embed

    def failing_dataset(ray: Any, refs: list[Any], job: Any) -> Any:
        # A Ray job whose every task raises something Ray cannot retry away.
        return ray.data.from_arrow_refs(refs).map_batches(_always_fails)

    monkeypatch.setattr(ray_ingest, "_dataset", failing_dataset)
    with pytest.raises(EngineError, match=r"\(OSError: disk on fire\).*a rerun resumes") as raised:
        ingest(source, settings)
    assert "\n" not in str(raised.value)

    # The command line: that one line, no log or traceback from Ray on either stream.
    capfd.readouterr()
    result = CliRunner().invoke(
        app,
        ["ingest", str(source), "--engine", "ray", "--uri", settings.milvus.uri],
        env={
            "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(settings.embedding.model_dir),
            "MILVUS_RAG_MILVUS__COLLECTION": "failing",
        },
    )
    assert result.exit_code == EngineError.exit_code
    line = result.stderr.rsplit("\r", 1)[-1].strip()  # after the progress bar, erased
    assert line.startswith("error: ") and "\n" not in line
    assert "(OSError: disk on fire)" in line and "a rerun resumes" in line
    leaked = capfd.readouterr()
    assert "Traceback" not in leaked.out + leaked.err + result.output, leaked
    monkeypatch.undo()

    write_corpus(source, version=1)  # back: the collection is still the first ingest's
    assert not ingest(source, settings).changed
    assert first.changed


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_driver_converges_on_rerun(
    ray_cluster: Any,
    lite_server: ServerProcess,
    on: Callable[..., Settings],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """``kill -9`` of `ingest --engine ray` at random times, three times, then a rerun.

    The driver joins the test's Ray (no Ray processes of its own to leave behind);
    small write batches put many inserts and deletes in the window. Each round starts
    from what the previous kill left, the corpus switching version between rounds, so
    kills land in adds, updates and stale deletes.
    """
    import random

    source = write_corpus(tmp_path / "docs")
    env = {
        **os.environ,
        "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(tiny_model_dir),
        "MILVUS_RAG_MILVUS__URI": lite_server.uri,
        "MILVUS_RAG_MILVUS__COLLECTION": "driver_killed",
        "MILVUS_RAG_INGEST__WRITE_BATCH": "4",
        "MILVUS_RAG_INGEST__RAY_FILE_BATCH": "1",
    }
    command = [sys.executable, "-m", "milvus_rag.cli", "ingest", str(source), "--prune"]
    command += ["--engine", "ray", "--ray-address", ray_cluster.get_runtime_context().gcs_address]

    killed = 0

    def run(kill_after: float | None) -> subprocess.CompletedProcess[str] | None:
        nonlocal killed
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if kill_after is None:
            out, err = proc.communicate(timeout=600)
            return subprocess.CompletedProcess(command, proc.returncode, out, err)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()
            killed += 1
        proc.communicate()
        return None

    started = time.monotonic()
    assert run(None).returncode == 0  # type: ignore[union-attr]
    whole = time.monotonic() - started
    chooser = random.Random(os.getpid())
    for round_, version in enumerate((2, 1, 2)):
        write_corpus(source, version=version)
        for guide in (source / "guides").glob("*.md"):  # every guide changes: a whole run's work
            guide.write_text(guide.read_text() + f"\nRound {round_} revision.\n")
        run(chooser.uniform(0.2, 0.7) * whole)
    assert killed >= 2  # the kills came before the end
    final = run(None)
    assert final is not None and final.returncode == 0, final.stderr[-2000:]

    clean = on(lite_server, "driver_clean", "local")
    ingest(source, clean, recreate=True)
    assert_same_collection(on(lite_server, "driver_killed", "ray"), clean)
    again = run(None)
    assert again is not None and "nothing changed" in again.stdout + again.stderr, again.stdout


def _ray_descendants(root: int) -> dict[int, tuple[bytes, str]]:
    """The living processes under ``root`` that are Ray's: pid -> (start time, title)."""
    table: dict[int, tuple[int, bytes, bytes]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            table[int(name)] = (int(fields[1]), fields[19], fields[0])
        except (OSError, IndexError, ValueError):
            continue
    found: dict[int, tuple[bytes, str]] = {}
    for pid, (ppid, started, state) in table.items():
        up, seen = ppid, set()
        while up in table and up != root and up not in seen:
            seen.add(up)
            up = table[up][0]
        if up != root or state == b"Z":
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if "ray" in title:
            found[pid] = (started, title)
    return found


def _still_running(processes: dict[int, tuple[bytes, str]]) -> list[str]:
    """Those of ``processes`` still running (not reused pids, not zombies)."""
    left = []
    for pid, (started, title) in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == started and fields[0] != b"Z":
            left.append(f"{pid} {title[:80]}")
    return left


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_ray_ingest_leaves_no_ray_process(
    tmp_path: Path, tiny_model_dir: Path, llm: Any, corpus: Path
) -> None:
    """``kill -9`` of an ``--engine ray`` ingest mid-run: the local Ray it started (its
    agents included) is gone within 30 s."""
    import yaml

    from tests.conftest import base_config

    pytest.importorskip("ray.data")
    config = base_config(tmp_path / "killed.db", tiny_model_dir, llm)
    config["ingest"] = {"ray_embed_batch": 1, "ray_file_batch": 1}  # many small tasks
    path = tmp_path / "ray.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "milvus_rag.cli", "ingest", str(corpus)]
    driver = subprocess.Popen(
        [*command, "--engine", "ray", "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    seen: dict[int, tuple[bytes, str]] = {}
    try:
        # Mid-run: Ray's agents are up and its workers are parsing or embedding.
        while driver.poll() is None:
            seen.update(_ray_descendants(driver.pid))
            titles = [title for _, title in seen.values()]
            agents = any("DashboardAgent" in t for t in titles)
            if agents and any("MapBatches" in t or "MapWorker" in t for t in titles):
                break
            time.sleep(0.1)
        assert driver.poll() is None, "the ingest ended before it could be killed mid-run"
        seen.update(_ray_descendants(driver.pid))
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        left = _still_running(seen)
        for _ in range(300):  # up to 30 s, done as soon as none is left
            if not left:
                break
            time.sleep(0.1)
            left = _still_running(seen)
        assert not left, f"Ray processes outlived their driver: {left}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in seen:  # whatever the outcome, leave nothing behind
            if _still_running({pid: seen[pid]}):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
