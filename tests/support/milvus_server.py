"""A real Milvus standalone server (PyPI ``milvus``, command ``milvus-server``) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.lite_server import free_port


def milvus_server_command() -> str | None:
    """Path of ``milvus-server`` beside this interpreter or on PATH, if installed."""
    beside = Path(sys.executable).with_name("milvus-server")
    return str(beside) if beside.exists() else shutil.which("milvus-server")


class MilvusServer:
    """``start()`` waits until the proxy answers; ``stop()`` kills the whole process group."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> MilvusServer:
        command = milvus_server_command()
        if command is None:
            raise RuntimeError("milvus-server is not installed")
        self.proc = subprocess.Popen(
            [command, "--data", str(self.data_dir), "--proxy-port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("milvus-server exited early")
            if self._ready():
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError("milvus-server did not become ready")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        from pymilvus import MilvusClient

        try:
            MilvusClient(uri=self.uri, timeout=5).list_collections()
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
