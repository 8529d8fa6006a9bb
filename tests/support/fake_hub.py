"""A local HTTP server answering file downloads the way the Hugging Face hub does.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.url` and ``huggingface_hub`` downloads from it:
``HEAD`` and ``GET /{repo}/resolve/{revision}/{path}`` with the headers the client
reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``), ``X-Error-Code:
EntryNotFound`` (404) for a file the repository lacks and ``RepoNotFound`` (401) for a
repository it does not have.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

__all__ = ["FakeHub"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        hub = self.server.hub
        path = self.path.split("?", 1)[0]
        with hub.lock:
            hub.requests.append(f"{self.command} {path}")
        match = _RESOLVE.match(path)
        files = hub.repos.get(match["repo"]) if match else None
        if match is None or files is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return
        content = files.get(match["path"])
        if content is None:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def _error(self, status: int, code: str, message: str) -> None:
        data = f'{{"error": "{message}"}}'.encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


class FakeHub:
    """Repositories (``owner/name`` -> {path in the repository: bytes}) served on loopback."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def add_folder(self, repo: str, folder: Path, prefix: str = "") -> None:
        """Serve every file of ``folder`` in ``repo`` (under ``prefix``, e.g. ``onnx/``)."""
        files = self.repos.setdefault(repo, {})
        for path in sorted(folder.iterdir()):
            if path.is_file():
                files[prefix + path.name] = path.read_bytes()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
