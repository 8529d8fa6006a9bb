"""`milvus_rag.server.docs`: ``/docs`` and ``/redoc`` offline."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from tests.support.server_ops import BEARER

pytestmark = pytest.mark.slow


def test_docs_work_offline(keyed: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = keyed.get(page, headers=BEARER).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", html)
        assert urls, page
        assert all(url.startswith("/") for url in urls), (page, urls)  # nothing from a CDN
        for url in urls:
            assert keyed.get(url, headers=BEARER).status_code == 200, url
    schema = keyed.get("/openapi.json", headers=BEARER).json()
    assert "/v1/chat/completions" in schema["paths"] and "/rag/invoke" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
