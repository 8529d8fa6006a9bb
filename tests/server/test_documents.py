"""Uploads and deletes through the server: ``/documents`` with writer keys, in scope."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from milvus_rag.keys import KeysFile
from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow

DOC = "# Travel\n\nTravel expenses are refunded within thirty days of the trip.\n"


@pytest.fixture
def server(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    keys_file = tmp_path / "keys.yaml"
    s = make_settings(
        server={
            "keys_file": str(keys_file),
            "upload_dir": str(tmp_path / "uploads"),
            "max_upload_bytes": 64 * 1024,
        },
        ingest={"allow_private_urls": True},
    )
    file = KeysFile(keys_file)
    headers = {
        name: {"Authorization": f"Bearer {file.add(name, role, scopes)}"}
        for name, role, scopes in [
            ("writer", "writer", ["hr"]),
            ("writer2", "writer", ["hr", "fin"]),
            ("reader", "reader", ["hr"]),
            ("other", "writer", ["fin"]),
            ("admin", "admin", []),
        ]
    }
    with TestClient(create_app(s)) as client:
        yield client, headers


def _finished(client: TestClient, job: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """Poll a job until it ends (no deadline of ours: the test runner's timeout bounds it)."""
    while True:
        found = client.get(f"/documents/jobs/{job['id']}", headers=headers)
        assert found.status_code == 200, found.text
        state = found.json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.05)


def _upload(
    client: TestClient, headers: dict[str, str], name: str, data: bytes, scope: str | None = None
) -> Any:
    form = {"scope": scope} if scope is not None else {}
    return client.post("/documents", files={"file": (name, data)}, data=form, headers=headers)


def test_an_upload_is_a_job_idempotent_and_in_scope(
    server: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = server
    sent = _upload(client, keys["writer"], "travel.md", DOC.encode())
    assert sent.status_code == 202, sent.text
    job = sent.json()
    assert job["scope"] == "hr" and sent.headers["Location"] == f"/documents/jobs/{job['id']}"
    done = _finished(client, job, keys["writer"])
    assert done["status"] == "done" and done["result"]["added"] == 1, done
    # The same content again writes nothing; a new content updates the same document.
    again = _finished(
        client, _upload(client, keys["writer"], "travel.md", DOC.encode()).json(), keys["writer"]
    )
    assert again["result"]["added"] == 0 and again["result"]["chunks_written"] == 0, again
    changed = DOC + "\nHotels are booked by the office.\n"
    updated = _finished(
        client,
        _upload(client, keys["writer"], "travel.md", changed.encode()).json(),
        keys["writer"],
    )
    assert updated["result"]["updated"] == 1, updated
    for who, expected in (("reader", ["travel.md"]), ("other", []), ("admin", ["travel.md"])):
        listed = client.get("/documents", headers=keys[who]).json()["documents"]
        assert [d["source"] for d in listed] == expected, who
    # Another key sees neither the job nor the document; a reader may not delete.
    assert client.get(f"/documents/jobs/{job['id']}", headers=keys["other"]).status_code == 404
    assert client.delete("/documents/travel.md", headers=keys["other"]).status_code == 404
    assert client.delete("/documents/travel.md", headers=keys["reader"]).status_code == 403
    deleted = client.delete("/documents/travel.md", headers=keys["writer"])
    assert deleted.status_code == 200 and deleted.json()["rows_deleted"] > 0
    assert client.get("/documents", headers=keys["admin"]).json()["documents"] == []


def test_uploads_are_refused_clearly(server: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = server
    reader = _upload(client, keys["reader"], "a.md", DOC.encode())
    assert reader.status_code == 403 and "writer" in reader.json()["error"]["message"]
    outside = _upload(client, keys["writer"], "a.md", DOC.encode(), scope="fin")
    assert outside.status_code == 403
    several = _upload(client, keys["writer2"], "a.md", DOC.encode())
    assert several.status_code == 422 and "several scopes" in several.json()["error"]["message"]
    big = _upload(client, keys["writer"], "big.md", b"x" * (65 * 1024))
    assert big.status_code == 413 and "server.max_upload_bytes" in big.text
    nameless = client.post("/documents", files={"file": ("", b"text")}, headers=keys["writer"])
    assert nameless.status_code == 422
    nothing = client.post("/documents", json={"nope": 1}, headers=keys["writer"])
    assert nothing.status_code == 422
    # An archive whose member climbs out of its folder: refused by the ingest's guard.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape.md", DOC)
    slip = _finished(
        client,
        _upload(client, keys["writer"], "docs.zip", buffer.getvalue()).json(),
        keys["writer"],
    )
    assert slip["status"] == "failed" and slip["error"]["type"] == "UnsafeSourceError", slip
    odd = _finished(
        client, _upload(client, keys["writer"], "photo.bin", b"\x00\x01").json(), keys["writer"]
    )
    assert odd["status"] in ("done", "failed"), odd
    assert client.get("/documents", headers=keys["admin"]).json()["documents"] == []


class _Docs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = DOC.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/markdown")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_url_goes_into_the_scope(server: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = server
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Docs)
    Thread(target=http.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}/guide/travel.md"
        sent = client.post("/documents", json={"url": url, "scope": "fin"}, headers=keys["other"])
        assert sent.status_code == 202, sent.text
        done = _finished(client, sent.json(), keys["other"])
        assert done["status"] == "done" and done["result"]["added"] == 1, done
    finally:
        http.shutdown()
    listed = client.get("/documents", headers=keys["other"]).json()["documents"]
    assert [(d["scope"], d["chunks"] > 0) for d in listed] == [("fin", True)]
    assert client.get("/documents", headers=keys["writer"]).json()["documents"] == []


# --------------------------------------------------------------------------- restarts


def _archive(files: int = 24) -> bytes:
    """A zip of markdown files, several chunks each: an ingest of many writes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(files):
            sections = "\n\n".join(
                f"## Part {p}\n\n" + f"Policy {n}.{p}: travel item {n * 7 + p} is refunded. " * 12
                for p in range(4)
            )
            archive.writestr(f"policies/p{n:02d}.md", f"# Policy {n}\n\n{sections}\n")
    return buffer.getvalue()


class _Served:
    """``milvus-rag serve`` in its own process group, killed with SIGKILL or stopped."""

    def __init__(self, config: Path) -> None:
        import socket

        self.log = config.with_suffix(".log")

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
        argv = [sys.executable, "-m", "milvus_rag.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, "-c", str(config)],
            env={**env, "TEST_LLM_KEY": "test-key", "GRPC_VERBOSITY": "NONE"},
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        while True:  # the test runner's timeout bounds the start
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base}/health", timeout=10).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)

    def upload(self, key: str, data: bytes) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        files = {"file": ("policies.zip", data)}
        sent = httpx.post(f"{self.base}/documents", files=files, headers=headers, timeout=60)
        assert sent.status_code == 202, sent.text
        return dict(sent.json())

    def job(self, key: str, job_id: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        found = httpx.get(f"{self.base}/documents/jobs/{job_id}", headers=headers, timeout=60)
        assert found.status_code == 200, found.text
        return dict(found.json())

    def finished(self, key: str, job_id: str) -> dict[str, Any]:
        while (state := self.job(key, job_id))["status"] not in ("done", "failed"):
            time.sleep(0.05)
        return state

    def documents(self, key: str) -> list[Any]:
        headers = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{self.base}/documents", headers=headers, timeout=60)
        assert listed.status_code == 200, listed.text
        return list(listed.json()["documents"])

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the server and Milvus Lite's own process
        self.proc.wait()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        assert self.proc.wait(timeout=120) == 0


def _stored(settings: Settings) -> dict[str, tuple[Any, ...]]:
    from milvus_rag.store import connect, iter_rows, load_collection

    client = connect(settings.milvus)
    try:
        load_collection(client, settings.milvus.collection)
        fields = ["id", "text", "source", "scope", "origin", "position"]
        rows = [
            row
            for page in iter_rows(client, settings.milvus.collection, output_fields=fields)
            for row in page
        ]
    finally:
        client.close()
    return {str(r["id"]): tuple(r.get(f) for f in fields[1:]) for r in rows}


def test_a_server_killed_mid_job_leaves_what_a_rerun_completes(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
) -> None:
    """SIGKILL of the server while an upload's job writes (at the job's start, then once its
    first document is listed): the same upload after a restart completes the collection to
    what one clean upload gives, and once more writes nothing."""
    import yaml

    data = _archive()
    keys_file = tmp_path / "keys.yaml"
    key = KeysFile(keys_file).add("writer", "writer", ["hr"])
    server = {
        "keys_file": str(keys_file),
        "upload_dir": str(tmp_path / "uploads"),
        "max_upload_bytes": 4 * 1024 * 1024,
    }

    def config(db: str) -> Path:
        values = base_config(tmp_path / f"{db}.db", tiny_model_dir, llm)
        values["server"] = server
        values["ingest"] = {"write_batch": 4}
        path = tmp_path / f"{db}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    killed = config("killed")
    for moment in ("running", "listed"):
        served = _Served(killed)
        if moment == "running":  # no database yet: uploads may fill it
            assert "upload documents with a writer key" in served.log.read_text()
        job = served.upload(key, data)
        while (state := served.job(key, job["id"]))["status"] == "queued":
            time.sleep(0.01)
        if moment == "listed":
            while state["status"] == "running" and not served.documents(key):
                state = served.job(key, job["id"])
        served.kill()
    served = _Served(killed)
    done = served.finished(key, served.upload(key, data)["id"])
    assert done["status"] == "done", done
    again = served.finished(key, served.upload(key, data)["id"])
    assert again["result"]["chunks_written"] == again["result"]["chunks_deleted"] == 0, again
    served.stop()

    clean = _Served(config("clean"))
    assert clean.finished(key, clean.upload(key, data)["id"])["status"] == "done"
    clean.stop()
    got = _stored(make_settings(milvus={"uri": str(tmp_path / "killed.db")}))
    want = _stored(make_settings(milvus={"uri": str(tmp_path / "clean.db")}))
    assert len(want) > 24 and got == want
