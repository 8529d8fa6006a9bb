"""What the server's tests share: clients of apps over a filled collection (FastAPI's TestClient,
Milvus Lite in a temp dir, the tiny model, the real local OpenAI-compatible server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.support.server import (
    _fill,
)
from tests.support.server_ops import KEY


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def keyed(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A client of an app over a filled collection that needs :data:`KEY`."""
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    with TestClient(create_app(_fill(make_settings()))) as client:
        yield client
