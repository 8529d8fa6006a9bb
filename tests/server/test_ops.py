"""`milvus_rag.server.ops`: ``/health`` and ``/ready``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.support.corpus import CHAIN_DOCS
from tests.support.openai_server import FakeOpenAIServer, closed_port
from tests.support.server import (
    _fill,
)
from tests.support.server_ops import BEARER, _ready

pytestmark = pytest.mark.slow


def test_health_needs_nothing(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_when_everything_answers(keyed: TestClient) -> None:
    status, body = _ready(keyed, headers=BEARER)
    assert status == 200 and body["ready"] is True
    checks = body["checks"]
    assert list(checks) == ["milvus", "collection", "identity", "llm"]
    assert all(check["ok"] for check in checks.values())
    assert checks["llm"]["required"] is False
    assert f"holds {len(CHAIN_DOCS)} chunks" in checks["collection"]["message"]
    # Without the key: the verdicts only (messages name URIs and paths).
    status, body = _ready(keyed)
    assert status == 200
    assert all(set(check) == {"ok", "required"} for check in body["checks"].values())
    assert keyed.get("/health").json() == {"status": "ok"}


def test_not_ready_without_the_collection(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:  # no database file yet
        status, body = _ready(client)
        assert status == 503 and body["ready"] is False
        assert not body["checks"]["milvus"]["ok"]
        assert "no Milvus Lite database" in body["checks"]["milvus"]["message"]
        assert client.get("/health").status_code == 200
    _fill(make_settings())  # the database now exists, but not this collection
    with TestClient(create_app(make_settings(milvus={"collection": "other"}))) as client:
        status, body = _ready(client)
        assert status == 503
        assert body["checks"]["milvus"]["ok"]
        assert "collection other does not exist" in body["checks"]["collection"]["message"]
        assert not body["checks"]["identity"]["ok"]


def test_not_ready_when_the_model_differs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from tests.support.tiny_model import make_tiny_model

    _fill(make_settings())
    other = make_tiny_model(tmp_path / "other-model", hidden=16)
    with TestClient(create_app(make_settings(embedding={"model_dir": str(other)}))) as client:
        status, body = _ready(client)
    assert status == 503
    assert body["checks"]["collection"]["ok"]
    identity = body["checks"]["identity"]
    assert not identity["ok"] and "--recreate" in identity["message"]


def test_ready_reports_an_unreachable_llm_without_failing(
    make_settings: Callable[..., Settings],
) -> None:
    s = _fill(make_settings(llm={"base_url": f"http://127.0.0.1:{closed_port()}/v1"}))
    with TestClient(create_app(s)) as client:
        status, body = _ready(client)
    assert status == 200 and body["ready"] is True
    llm = body["checks"]["llm"]
    assert llm == {"ok": False, "required": False, "message": llm["message"]}
    assert "cannot be reached" in llm["message"]


def test_ready_when_the_llm_refuses_the_key(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    with TestClient(create_app(_fill(make_settings()))) as client:
        llm.script(status=401)
        status, body = _ready(client)
    assert status == 200
    assert "rejected the key in TEST_LLM_KEY" in body["checks"]["llm"]["message"]


@pytest.mark.slow
def test_health_is_alive_while_milvus_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(milvus={"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 2})
    with TestClient(create_app(s)) as client:
        assert client.get("/health").status_code == 200
        status, body = _ready(client)
    assert status == 503
    assert "cannot be reached" in body["checks"]["milvus"]["message"]
    assert body["checks"]["collection"]["ok"] is False
