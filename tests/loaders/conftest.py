"""What the loaders' tests share: a local HTTP server of documents; parser state reset per test."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from milvus_rag.loaders import formats

from tests.support.sources import _Server, make_zip


@pytest.fixture(autouse=True)
def _reset_module_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(formats, "_fallback_noted", False)
    yield


@pytest.fixture(scope="module", autouse=True)
def _stop_workers() -> Iterator[None]:
    yield
    formats._shutdown_workers()


# --------------------------------------------------------------------------- URLs

ZIP_BODY = make_zip({"en/faq/a.md": b"# A\n", "b.txt": b"b"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _drip(self, body: bytes, length: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for byte in body:  # each read well within the read timeout
            time.sleep(0.1)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _drip_headers(self) -> None:
        head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n" + b"X-Pad: " + b"p" * 40
        for byte in head + b"\r\n\r\nlate":
            time.sleep(0.1)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/hop/"):  # a chain of redirects, each answered quickly enough
            time.sleep(0.2)
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/hop/{left - 1}" if left else "/docs.zip")
        elif path == "/drip":
            self._drip(b"d" * 40, length=True)
        elif path == "/drip-stream":
            self._drip(b"d" * 40, length=False)
        elif path == "/drip-headers":
            self._drip_headers()
        elif path == "/docs.zip":
            self._send(200, ZIP_BODY, "application/zip")
        elif path == "/page.md":
            self._send(200, b"# Page\n", "text/markdown; charset=utf-8")
        elif path == "/guide.mdx":  # servers often call .mdx and .text plain text
            self._send(200, b"# Guide\n\nMDX body.\n", "text/plain")
        elif path == "/notes.text":
            self._send(200, b"Plain notes.\n", "application/octet-stream")
        elif path == "/readme":
            self._send(200, b"# Readme\n", "text/markdown")
        elif path == "/error.zip":
            self._send(200, b"<html>Not found</html>", "text/html")
        elif path == "/blob":
            self._send(200, os.urandom(2048), "application/octet-stream")
        elif path == "/big":
            self._send(200, b"z" * 5000, "text/plain")
        elif path == "/big-stream":
            self._send(200, b"z" * 5000, "text/plain", length=False)
        elif path == "/never":  # accepts the request, never answers
            self.server.released.wait()
        elif path == "/redirect":
            self._redirect("/docs.zip")
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data")
        else:
            self._send(404, b"missing", "text/plain")


@pytest.fixture(scope="module")
def http_server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    httpd.released = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd
    finally:
        httpd.released.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(http_server: _Server) -> _Server:
    """The local HTTP server with its request log cleared."""
    http_server.seen.clear()
    return http_server
