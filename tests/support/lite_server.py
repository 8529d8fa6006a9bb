"""Milvus Lite served over gRPC on loopback in a subprocess (`milvus-lite server` on 3.x)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing_extensions import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started in its own process group on a free loopback port.

    ``start()`` waits until :meth:`ready`; ``stop()`` kills the whole group.
    """

    name = "server"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 180) -> Self:
        self.proc = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early")
            if self.ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


class LiteServer(ServerProcess):
    """``milvus-lite server``: Milvus Lite served over gRPC."""

    name = "milvus-lite server"

    def command(self) -> list[str]:
        from milvus_rag.store import lite_engine

        if (lite_engine() or "3").startswith("2."):
            # Milvus Lite 2.x has no `milvus-lite server`: its Server serves a file on an
            # address (the compiled engine runs in a child process, in this process group).
            self.data_dir.mkdir(parents=True, exist_ok=True)
            script = (
                "import sys, time\n"
                "from milvus_lite.server import Server\n"
                "server = Server(sys.argv[1], sys.argv[2])\n"
                "if not server.start():\n"
                "    sys.exit(1)\n"
                "while True:\n"
                "    time.sleep(3600)\n"
            )
            address = f"127.0.0.1:{self.port}"
            db = str(self.data_dir / "served.db")
            return [sys.executable, "-W", "ignore", "-c", script, db, address]
        # This interpreter's own (another venv's may be first on PATH, e.g. CI's 3.x stage).
        beside = Path(sys.executable).with_name("milvus-lite")
        exe = str(beside) if beside.exists() else shutil.which("milvus-lite") or str(beside)
        return [
            exe,
            "server",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]


@contextmanager
def lite_file_held(db: Path) -> Iterator[Path]:
    """A Milvus Lite database held open by another process while the block runs."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pymilvus import MilvusClient\n"
            f"client = MilvusClient(uri={str(db)!r})\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield db
    finally:
        holder.communicate("\n", timeout=60)
