"""A real Milvus standalone server (PyPI ``milvus``, command ``milvus-server``) on loopback."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.support.lite_server import ServerProcess


def milvus_server_command() -> str | None:
    """Path of ``milvus-server`` beside this interpreter or on PATH, if installed."""
    beside = Path(sys.executable).with_name("milvus-server")
    return str(beside) if beside.exists() else shutil.which("milvus-server")


class MilvusServer(ServerProcess):
    """``milvus-server``: a real Milvus standalone server."""

    name = "milvus-server"

    def command(self) -> list[str]:
        command = milvus_server_command()
        if command is None:
            raise RuntimeError("milvus-server is not installed")
        return [command, "--data", str(self.data_dir), "--proxy-port", str(self.port)]

    def ready(self) -> bool:
        if not super().ready():
            return False
        from pymilvus import MilvusClient

        try:
            MilvusClient(uri=self.uri, timeout=5).list_collections()
            return True
        except Exception:
            return False
