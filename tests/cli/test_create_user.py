"""``milvus-rag create-user``: refusals that need no server."""

from __future__ import annotations

import pytest

from milvus_rag.cli import app
from tests.support.access import USER_TOKEN, _one_line, runner


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MILVUS_RAG_MILVUS__URI": "./x.db"}, "is a Milvus Lite file: it has no users"),
        ({}, "the user to create must be USER:PASSWORD (MILVUS_RAG_MILVUS__TOKEN)"),
        ({"MILVUS_RAG_MILVUS__TOKEN": "an-api-key"}, "must be USER:PASSWORD"),
        ({"MILVUS_RAG_MILVUS__TOKEN": "milvus_rag:"}, "must be USER:PASSWORD"),
        ({"MILVUS_RAG_MILVUS__TOKEN": "9lives:pw123456"}, "names an invalid Milvus user"),
        ({"MILVUS_RAG_MILVUS__TOKEN": "root:pw123456"}, "names the administrator (root)"),
        ({"MILVUS_ADMIN_TOKEN": " ", "MILVUS_RAG_MILVUS__TOKEN": USER_TOKEN}, "token is empty"),
    ],
)
def test_create_user_refusals_need_no_server(env: dict[str, str], needle: str) -> None:
    env = {
        "MILVUS_RAG_MILVUS__URI": "http://127.0.0.1:1",
        "MILVUS_ADMIN_TOKEN": "root:admin-pw",
        **env,
    }
    line = _one_line(runner.invoke(app, ["create-user"], env=env), 2)
    assert needle in line
    assert "admin-pw" not in line and "pw123456" not in line and "Passw0rd" not in line
