"""What the server-operation tests share: the key, its header, /ready's answer."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

KEY = "k3y-for-tests"


BEARER = {"Authorization": f"Bearer {KEY}"}


# -- 3. /ready ---------------------------------------------------------------------------


def _ready(client: TestClient, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = client.get("/ready", **kwargs)
    return response.status_code, response.json()
