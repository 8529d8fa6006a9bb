"""``milvus-rag serve`` (one worker) under SIGTERM: it answers what it has started, then
exits 0, as ``docker stop``, systemd and Kubernetes expect of a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Where does Milvus store data?"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RAG_")}
    return {**env, "TEST_LLM_KEY": "test-key", "GRPC_VERBOSITY": "NONE"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
