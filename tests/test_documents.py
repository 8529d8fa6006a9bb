"""Uploads and deletes through the server: ``/documents`` with writer keys, in scope."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from fastapi.testclient import TestClient

from milvus_rag.keys import KeysFile
from milvus_rag.server import create_app
from milvus_rag.settings import Settings

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
