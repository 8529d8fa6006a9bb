"""What the sync tests share: a served Milvus Lite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lite_server(tmp_path: Path):
    from tests.support.lite_server import LiteServer

    server = LiteServer(tmp_path / "served").start()
    yield server
    server.stop()
