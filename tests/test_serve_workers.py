"""``milvus-rag serve --workers N``: N processes sharing nothing but Milvus.

The slow tests run the real command in a process of its own against ``milvus-lite
server`` on loopback, with the local OpenAI-compatible server as the LLM, and look at
the processes through ``/proc``: which workers the supervisor started, which of them
served requests (the access log names the worker), and that nothing of the session is
left after SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.corpus import CHAIN_DOCS, store_chain_docs
from tests.support.openai_server import FakeOpenAIServer, closed_port

KEY = "k3y-for-workers"
QUESTION = "Where does Milvus store data?"
CHAT = {"model": "workers-model", "messages": [{"role": "user", "content": QUESTION}]}
COLLECTION = "served_docs"

# -- the refusal on a Milvus Lite file (no process, no Milvus) --------------------------


def _lite_config(tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer) -> Path:
    path = tmp_path / "lite.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "milvus.db", tiny_model_dir, llm)))
    return path


def _refused(result: Any, tmp_path: Path, workers: int) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: --workers {workers} needs a Milvus server"), line
    db = tmp_path / "milvus.db"
    from milvus_rag.store import lite_serve_command

    assert lite_serve_command(str(db)) in line  # `milvus-lite server ...` on Lite 3.x
    assert "--uri http://127.0.0.1:19530" in line and "--workers 1" in line
    assert "serving" not in result.output and "Traceback" not in result.output
    assert not db.exists()  # nothing was opened


def test_workers_on_a_lite_file_are_refused(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer
) -> None:
    config = _lite_config(tmp_path, tiny_model_dir, llm)
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--config", str(config)])
    _refused(result, tmp_path, 2)


def test_workers_setting_on_a_lite_file_is_refused(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__WORKERS", "3")  # server.workers
    config = _lite_config(tmp_path, tiny_model_dir, llm)
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    _refused(result, tmp_path, 3)


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_workers_must_be_a_count(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, workers: str
) -> None:
    config = _lite_config(tmp_path, tiny_model_dir, llm)
    result = CliRunner().invoke(app, ["serve", "--workers", workers, "--config", str(config)])
    assert result.exit_code == 2
    assert "--workers" in result.output and "Traceback" not in result.output


# -- N workers against milvus-lite server ----------------------------------------------

linux_only = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(), reason="reads processes from /proc"
)


@pytest.fixture(scope="module")
def lite_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, llm_server: FakeOpenAIServer
) -> Iterator[Any]:
    """``milvus-lite server`` on loopback, its collection holding the chain documents."""
    from milvus_rag.settings import load_settings
    from tests.support.lite_server import LiteServer

    server = LiteServer(tmp_path_factory.mktemp("lite-served")).start()
    try:
        config = base_config(Path("unused.db"), tiny_model_dir, llm_server)
        config["milvus"] = {"uri": server.uri, "collection": COLLECTION}
        store_chain_docs(load_settings(overrides=config))
        yield server
    finally:
        server.stop()


def _session(sid: int) -> dict[int, tuple[int, str]]:
    """The live processes of session ``sid``: pid -> (parent pid, command line)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it just ended
        state, ppid, _group, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":  # a zombie has ended
            found[int(entry.name)] = (int(ppid), command)
    return found


def _workers(proc: subprocess.Popen[bytes]) -> set[int]:
    """The worker processes the serve process started (not multiprocessing's tracker)."""
    return {
        pid
        for pid, (ppid, command) in _session(proc.pid).items()
        if ppid == proc.pid and "spawn_main" in command
    }


def _wait_until_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"serve did not answer /health: {log.read_text()}")


def _chat(port: int, **kwargs: Any) -> httpx.Response:
    # A client (and so a connection) per request: the kernel hands each to a worker.
    with httpx.Client(timeout=120) as client:
        return client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT, **kwargs)


def _served_by(log: Path) -> set[int]:
    """The worker pids of the access log lines of answered chat completions."""
    found = re.findall(r"\[(\d+)\] POST /v1/chat/completions 200 ", log.read_text())
    return {int(pid) for pid in found}


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_workers_serve_from_separate_processes_and_stop_together(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    lite_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
) -> None:
    config = base_config(Path("unused.db"), tiny_model_dir, llm)
    # Each worker must see what the command saw: the config file, the flags (the
    # collection here, which the file gets wrong) and the environment (the key).
    config["milvus"] = {"uri": lite_server.uri, "collection": "not_this_one"}
    config["server"] = {"model_name": "workers-model"}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    monkeypatch.setattr(llm, "delay", 0.3)  # requests overlap
    port = closed_port()
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "milvus_rag.cli", "serve", "--workers", "2"]
    argv += ["--port", str(port), "--config", str(path), "--collection", COLLECTION]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stderr=stderr, start_new_session=True)
    try:
        _wait_until_healthy(proc, port, log)
        headers = {"Authorization": f"Bearer {KEY}"}

        # Rounds of 16 concurrent requests until both workers have answered some.
        responses: list[httpx.Response] = []
        with ThreadPoolExecutor(16) as pool:
            for _ in range(20):
                responses += pool.map(lambda _: _chat(port, headers=headers), range(16))
                if len(_served_by(log)) >= 2:
                    break
        assert [r.status_code for r in responses] == [200] * len(responses)
        for response in responses:
            body = response.json()
            assert body["model"] == "workers-model"
            assert body["sources"] and body["choices"][0]["message"]["content"]
            assert {hit["source"] for hit in body["sources"]} <= {src for _, src in CHAIN_DOCS}
        workers = _workers(proc)
        assert len(workers) == 2, _session(proc.pid)
        assert _served_by(log) == workers, log.read_text()
        assert _chat(port).status_code == 401  # the key reached the workers too

        if stop == "sigterm":  # as systemd and docker stop do: the server process only
            monkeypatch.setattr(llm, "delay", 2.0)
            asked = len(llm.chat_requests())
            in_flight: list[httpx.Response] = []
            thread = threading.Thread(target=lambda: in_flight.append(_chat(port, headers=headers)))
            thread.start()
            while len(llm.chat_requests()) == asked:  # the request reached the LLM
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGTERM)
            thread.join(timeout=60)
            assert in_flight and in_flight[0].status_code == 200  # finished, not cut
        else:
            # A worker that dies is replaced, and the port keeps being served.
            os.kill(min(workers), signal.SIGKILL)
            deadline = time.monotonic() + 120
            while (_workers(proc) == workers or len(_workers(proc)) < 2) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.2)
            replaced = _workers(proc)
            assert len(replaced) == 2 and min(workers) not in replaced
            with ThreadPoolExecutor(8) as pool:
                again = list(pool.map(lambda _: _chat(port, headers=headers), range(8)))
            assert [r.status_code for r in again] == [200] * 8
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 15
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _session(proc.pid) == {}  # workers and multiprocessing's tracker are gone
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))  # the port is free
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _answered_by(log: Path, status: int) -> set[int]:
    """The worker pids of the access log lines of ``GET /v1/models`` answered ``status``."""
    found = re.findall(rf"\[(\d+)\] GET /v1/models {status} ", log.read_text())
    return {int(pid) for pid in found}


@linux_only
@pytest.mark.slow
def test_a_session_is_valid_on_every_worker_and_logout_ends_it_on_all(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    lite_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = base_config(Path("unused.db"), tiny_model_dir, llm)
    config["milvus"] = {"uri": lite_server.uri, "collection": COLLECTION}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    temp = tmp_path / "tmp"  # where serve makes the workers' session folder
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    port = closed_port()
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "milvus_rag.cli", "serve", "--workers", "2"]
    argv += ["--port", str(port), "--config", str(path)]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stderr=stderr, start_new_session=True)
    try:
        _wait_until_healthy(proc, port, log)
        assert len(list(temp.glob("milvus-rag-sessions-*"))) == 1
        base = f"http://127.0.0.1:{port}"
        login = httpx.get(f"{base}/login", params={"key": KEY}, timeout=60)
        assert login.status_code == 303
        cookie = {"milvus_rag_login": login.cookies["milvus_rag_login"]}

        def models(status: int) -> None:
            """Requests with the cookie, a connection each, until both workers answered
            ``status`` to it (no other status allowed)."""
            workers = _workers(proc)
            for _ in range(200):
                response = httpx.get(f"{base}/v1/models", cookies=cookie, timeout=60)
                assert response.status_code == status, response.text
                if _answered_by(log, status) == workers:
                    return
            pytest.fail(f"one worker never answered: {log.read_text()}")

        models(200)  # opened on one worker: valid on both
        assert httpx.get(f"{base}/logout", cookies=cookie, timeout=60).status_code == 303
        models(401)  # ended on one worker: refused by both
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert list(temp.glob("milvus-rag-sessions-*")) == []  # it goes with the server
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
