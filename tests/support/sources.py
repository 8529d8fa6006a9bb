"""What the sources tests share: a local HTTP server of documents and zips, trees of files."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import ThreadingHTTPServer
from pathlib import Path

from milvus_rag.loaders import sources
from milvus_rag.loaders.sources import (
    SourceLimits,
)

#: Loopback allowed; a timeout no answer of the local server comes near, however busy the
#: machine (no test depends on timing: timeouts are tested with servers that never answer).
LOCAL = SourceLimits(allow_private_urls=True, download_timeout=60)


# --------------------------------------------------------------------------- helpers


def make_tree(root: Path) -> Path:
    files = {
        "en/faq/product_faq.md": "# Product\n",
        "en/faq/operational_faq.md": "# Ops\n",
        "en/faq/sub/deep.md": "# Deep\n",
        "en/guide/intro.txt": "intro\n",
        "zh/readme.md": "# zh\n",
        "top.md": "# top\n",
        ".git/config.md": "not a doc\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def paths(listing: sources.SourceListing) -> list[str]:
    return [f.path for f in listing.files]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    seen: list[tuple[str, str]]
    released: threading.Event  # set at shutdown: /never's handlers return


def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


SIGNED = "?X-Amz-Signature=SECRETSIG&X-Amz-Credential=SECRETCRED#SECRETFRAG"


def _with_secrets(server: _Server, path: str) -> tuple[str, str]:
    port = server.server_address[1]
    url = f"http://alice:SECRETPW@127.0.0.1:{port}{path}{SIGNED}"
    return url, f"http://127.0.0.1:{port}{path}?X-Amz-Signature=&X-Amz-Credential="
