"""``milvus-rag serve``: the port and host checks, workers, signals, warnings, end to end over loopback."""

from __future__ import annotations

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from milvus_rag.settings import Settings
from tests.support.server import (
    QUESTION,
    _fill,
)

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
    return {**env, "TEST_LLM_KEY": "test-key", "GRPC_VERBOSITY": "NONE"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_sigterm_drains_then_exits_0(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path / "milvus.db", tiny_model_dir, llm)))
    script = (
        "import sys; from milvus_rag.settings import load_settings; "
        "from tests.support.corpus import store_chain_docs; "
        "store_chain_docs(load_settings(sys.argv[1]))"
    )
    env = _env()
    subprocess.run([sys.executable, "-c", script, str(config)], cwd=REPO, env=env, check=True)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_rag.cli", "serve", "--port", str(port), "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        # An answer in flight when SIGTERM comes: the LLM holds it a while.
        llm.script(answer="Object storage.", delay=3)
        answered: dict[str, Any] = {}

        def ask() -> None:
            body = {"model": "milvus-rag", "messages": [{"role": "user", "content": QUESTION}]}
            answered["response"] = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)

        asking = threading.Thread(target=ask)
        asking.start()
        while not llm.chat_requests():  # the request reached the LLM: it is in flight
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        asking.join(timeout=60)
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode() if proc.stderr else ""
        response = answered["response"]
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "Object storage."
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


KEY = "k3y-for-workers"


WORKERS_CHAT = {"model": "workers-model", "messages": [{"role": "user", "content": QUESTION}]}


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
        return client.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=WORKERS_CHAT, **kwargs
        )


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


@pytest.mark.slow
def test_serve_command_end_to_end(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, faq_folder: Path
) -> None:
    from tests.conftest import base_config

    port = closed_port()
    config = base_config(tmp_path / "served.db", tiny_model_dir, llm)
    config["server"] = {"port": port}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
    env.update({"TEST_LLM_KEY": "test-key", "MILVUS_RAG_SERVER__API_KEY": "k1"})
    cli = [sys.executable, "-m", "milvus_rag.cli"]
    cfg = ["--config", str(tmp_path / "config.yaml")]
    ingest = subprocess.run(
        [*cli, "ingest", str(faq_folder), *cfg],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr
    server = subprocess.Popen(
        [*cli, "serve", *cfg], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        response = httpx.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "How is data stored in milvus?"}]},
            headers={"Authorization": "Bearer k1"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == llm.answer
        assert response.json()["sources"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_serve_refuses_an_empty_collection(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app
    from tests.conftest import base_config

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path / "empty.db", tiny_model_dir, llm)))
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "milvus-rag ingest" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("host", "key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.20", None, True),
        ("0.0.0.0", "k1", False),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
    ],
)
def test_serve_warns_when_reachable_without_a_key(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    key: str | None,
    warned: bool,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app
    from tests.conftest import base_config

    serve_command = importlib.import_module("milvus_rag.cli.serve")
    config = tmp_path / "c.yaml"  # the collection the settings fixture filled
    config.write_text(yaml.safe_dump(base_config(tmp_path / "milvus.db", tiny_model_dir, llm)))
    if key:
        monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", key)
    ran: list[tuple[Any, list[Any]]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: ran.append((self, sockets)))
    # Only the warning is under test: listen on loopback whatever the host.
    listen = serve_command._listen
    monkeypatch.setattr(serve_command, "_listen", lambda host, port: listen("127.0.0.1", 0))
    result = CliRunner().invoke(app, ["serve", "--host", host, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert ran and ran[0][0].config.host == host  # it still starts
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if warned:
        assert len(warnings) == 1
        assert "MILVUS_RAG_SERVER__API_KEY" in warnings[0] and host in warnings[0]
    else:
        assert warnings == []


@pytest.fixture
def filled(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose collection (at ``tmp_path/milvus.db``) holds the chain documents."""
    return _fill(make_settings())


# -- 1. serve checks the port first ------------------------------------------------------


def _serve_config(tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, port: int) -> Path:
    from tests.conftest import base_config

    config = base_config(tmp_path / "milvus.db", tiny_model_dir, llm)
    config["server"] = {"port": port}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_serve_refuses_a_taken_port_before_anything_else(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # No collection at all: the port is checked before Milvus and the model.
        config = _serve_config(tmp_path, tiny_model_dir, llm, port)
        result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"port {port} is already in use" in lines[0] and "--port" in lines[0]
    assert "serving" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "milvus.db").exists()  # nothing was opened


@pytest.mark.slow
@pytest.mark.parametrize("host", ["\x80", "h\u00e9\x00st", "\x1b]0;title\x07"])
def test_serve_refuses_a_host_that_is_no_host_name(
    host: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the fuzz test: a non-ASCII --host was a TypeError from the socket layer."""
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    config = _serve_config(tmp_path, tiny_model_dir, llm, closed_port())
    result = CliRunner().invoke(app, ["serve", "--host", host, "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "\x1b" not in lines[0], lines
    assert lines[0].startswith("error: cannot listen on ") and "--host" in lines[0]
    assert not (tmp_path / "milvus.db").exists()


@pytest.mark.slow
def test_serve_listens_on_the_checked_socket(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    filled: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    port = closed_port()
    config = _serve_config(tmp_path, tiny_model_dir, llm, port)  # the filled collection
    served: list[int] = []

    def run(server: Any, sockets: list[socket.socket]) -> None:
        served.append(sockets[0].getsockname()[1])
        with socket.socket() as other, pytest.raises(OSError):  # the port is held
            other.bind(("127.0.0.1", port))

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert served == [port]
    assert result.stderr.splitlines()[-1].startswith(
        f"serving test_docs on http://127.0.0.1:{port}"
    )


@pytest.mark.slow
def test_serve_without_the_llm_key_warns_once_and_starts(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    filled: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.delenv("TEST_LLM_KEY")
    served: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: served.append(server))
    config = _serve_config(tmp_path, tiny_model_dir, llm, closed_port())
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert served
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "TEST_LLM_KEY" in warnings[0] and "503" in warnings[0]
