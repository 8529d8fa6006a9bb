"""A real Milvus standalone server (PyPI ``milvus``, command ``milvus-server``) on loopback."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from tests.support.lite_server import ServerProcess, free_port


def milvus_server_command() -> str | None:
    """Path of ``milvus-server`` beside this interpreter or on PATH, if installed."""
    beside = Path(sys.executable).with_name("milvus-server")
    return str(beside) if beside.exists() else shutil.which("milvus-server")


class MilvusServer(ServerProcess):
    """``milvus-server``: a real Milvus standalone server.

    Its embedded etcd gets free ports of its own: by default it always takes peer
    port 2380, so a second server on the machine (another test run) would crash.
    """

    name = "milvus-server"

    def command(self) -> list[str]:
        command = milvus_server_command()
        if command is None:
            raise RuntimeError("milvus-server is not installed")
        self.etcd_port, peer = free_port(), free_port()
        config = self.data_dir / "embed-etcd.yaml"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"name: default\ndata-dir: {self.data_dir / 'embed-etcd'}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
            f"listen-client-urls: http://127.0.0.1:{self.etcd_port}\n"
            f"advertise-client-urls: http://127.0.0.1:{self.etcd_port}\n"
        )
        self.etcd_config = config
        return [
            command,
            "--data",
            str(self.data_dir),
            "--proxy-port",
            str(self.port),
            "--etcd-port",
            str(self.etcd_port),
        ]

    def environment(self) -> dict[str, str]:
        # Milvus reads any setting from an upper-cased environment variable.
        return {**os.environ, "ETCD_CONFIG_PATH": str(self.etcd_config)}

    def ready(self) -> bool:
        if not super().ready():
            return False
        from pymilvus import MilvusClient

        try:
            MilvusClient(uri=self.uri, timeout=5).list_collections()
            return True
        except Exception:
            return False


class AuthMilvusServer(MilvusServer):
    """``milvus-server`` with authentication on (``common.security.authorizationEnabled``):
    every client needs a user (Milvus RBAC); root's password is Milvus's default."""

    name = "milvus-server (authentication on)"
    root_token = "root:Milvus"

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "COMMON_SECURITY_AUTHORIZATIONENABLED": "true"}

    def ready(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        from pymilvus import MilvusClient

        try:
            MilvusClient(uri=self.uri, token=self.root_token, timeout=5).list_collections()
            return True
        except Exception:
            return False


_Server = TypeVar("_Server", bound=MilvusServer)


def serving(server: _Server) -> Iterator[_Server]:
    """A fixture body: ``server`` started, stopped afterwards; the test skips where
    ``milvus-server`` is not installed or cannot start here."""
    import pytest

    if milvus_server_command() is None:
        pytest.skip("milvus-server (PyPI package milvus) is not installed")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"milvus-server could not start here: {exc}")
    yield server
    server.stop()
