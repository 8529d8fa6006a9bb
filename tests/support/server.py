"""What the HTTP tests share: the question, requests, a filled collection, server-sent events,
the routes that stream, an app served by uvicorn on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from milvus_rag.settings import Settings
from tests.support.corpus import store_chain_docs
from tests.support.openai_server import closed_port

QUESTION = "Where does Milvus store data?"


CHAT = {"model": "milvus-rag", "messages": [{"role": "user", "content": QUESTION}]}


def _fill(s: Settings) -> Settings:
    store_chain_docs(s)
    return s


def _events(text: str) -> list[Any]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def _sse_events(text: str) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of a server-sent event stream (comments skipped)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))
        if data or event != "message":
            out.append((event, "\n".join(data)))
    return out


STREAM_ROUTES = [
    f"{base}/{kind}"
    for base in ("/rag", "/rag-with-sources")
    for kind in (
        "stream",
        "stream_log",
        "stream_events",
    )
]


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback in a thread; its log records reach caplog."""
    import uvicorn

    port = closed_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
