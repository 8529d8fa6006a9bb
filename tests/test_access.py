"""The Milvus user milvus-rag connects as (``milvus-rag create-user``, Milvus RBAC).

The refusals need no server. The rest runs against a real Milvus server (PyPI ``milvus``
2.3.5, ``milvus-server``) started with authentication on: the command creates the user as
root, then every command milvus-rag has (ingest, search, serve, delete, migrate, ...) runs
as that user, which cannot do what it was not granted (manage users, roles, databases).
compose.yaml's Milvus 2.5 takes the same (classic) privileges; there is no Docker engine
here to run it (tests/system/test_deploy.py checks the compose file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from milvus_rag.access import PRIVILEGES
from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.access import USER_TOKEN, _one_line, runner
from tests.support.milvus_server import AuthMilvusServer, serving
from tests.support.openai_server import FakeOpenAIServer


def test_privileges_are_no_administrators() -> None:
    granted = {privilege for _, privilege in PRIVILEGES}
    for never in ("All", "CreateOwnership", "DropOwnership", "ManageOwnership", "UpdateUser"):
        assert never not in granted
    assert not {"CreateDatabase", "DropDatabase", "RenameCollection", "Import"} & granted


# -- against a real Milvus server with authentication on -------------------------------


@pytest.fixture(scope="module")
def auth_milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMilvusServer]:
    """A real Milvus server with authentication on, for this module."""
    yield from serving(AuthMilvusServer(tmp_path_factory.mktemp("milvus-auth")))


@pytest.mark.server
def test_milvus_rag_runs_as_its_own_user_with_only_what_it_needs(
    auth_milvus: AuthMilvusServer,
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    faq_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pymilvus import MilvusClient

    uri = auth_milvus.uri
    as_admin = {"MILVUS_ADMIN_TOKEN": auth_milvus.root_token, "MILVUS_RAG_MILVUS__URI": uri}
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", USER_TOKEN)

    # Without the user, milvus-rag cannot even connect.
    config = base_config(tmp_path / "unused.db", tiny_model_dir, llm)
    config["milvus"] = {"uri": uri, "collection": "rbac_docs"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    _one_line(runner.invoke(app, ["sources", "--config", str(path)]), 1)

    created = runner.invoke(app, ["create-user", "--config", str(path)], env=as_admin)
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("user milvus_rag created; role milvus_rag holds 17 privileges")
    again = runner.invoke(
        app, ["create-user", "--config", str(path)], env=as_admin
    )  # every `compose up` runs it
    assert again.exit_code == 0 and "user milvus_rag already existed" in again.stdout

    # Everything milvus-rag does, as milvus_rag.
    flags = ["--config", str(path)]
    for args in (
        ["ingest", str(faq_folder)],
        ["ingest", str(faq_folder)],  # unchanged: reads its records, writes nothing
        ["search", "How does Milvus store data?"],
        ["ask", "How does Milvus store data?", "--no-stream"],
        ["sources"],
        ["doctor", "--offline"],
        ["delete", "en/faq/product_faq.md", "--yes"],
        ["ingest", str(faq_folder), "--prune"],
        ["ingest", str(faq_folder), "--recreate", "--mode", "hybrid"],  # drops, creates
        ["migrate", "--to", uri, "--to-collection", "rbac_copy", "--recreate"],
        ["migrate", "--to", str(tmp_path / "copy.db")],
    ):
        result = runner.invoke(app, [*args, *flags])
        assert result.exit_code == 0, (args, result.output)

    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app
    from milvus_rag.settings import load_settings

    with TestClient(create_app(load_settings(path))) as client:
        ready = client.get("/ready").json()
        assert ready["ready"] is True, ready
        answer = client.post("/rag/invoke", json={"input": "How does Milvus store data?"})
        assert answer.status_code == 200, answer.text

    # It cannot do what it was not granted.
    user = MilvusClient(uri=uri, token=USER_TOKEN, timeout=30)
    try:
        for action in (
            lambda: user.create_user("intruder", "intruder-pw"),
            lambda: user.create_role("intruder"),
            lambda: user.grant_role("milvus_rag", "admin"),
            lambda: user.create_database("elsewhere"),
        ):
            with pytest.raises(Exception, match="(?i)permission|denied|privilege"):
                action()
    finally:
        user.close()
    root = MilvusClient(uri=uri, token=auth_milvus.root_token, timeout=30)
    try:
        assert "intruder" not in root.list_users()
        roles = root.describe_user("milvus_rag")["roles"]
        assert list(roles) == ["milvus_rag"]
    finally:
        root.close()


@pytest.mark.server
def test_an_existing_user_with_another_password_is_one_line(
    auth_milvus: AuthMilvusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MILVUS_ADMIN_TOKEN": auth_milvus.root_token, "MILVUS_RAG_MILVUS__URI": auth_milvus.uri}
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "rag_other:first-Passw0rd")
    assert runner.invoke(app, ["create-user"], env=env).exit_code == 0
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "rag_other:second-Passw0rd")
    line = _one_line(runner.invoke(app, ["create-user"], env=env), 1)
    assert "user rag_other existed already, with another password" in line
    assert "Passw0rd" not in line
    wrong_admin = {**env, "MILVUS_ADMIN_TOKEN": "root:not-the-password"}
    line = _one_line(runner.invoke(app, ["create-user"], env=wrong_admin), 1)
    assert "with the administrator's token (MILVUS_ADMIN_TOKEN)" in line
    assert "not-the-password" not in line
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "rag_short:12")  # Milvus: 6 characters at least
    line = _one_line(runner.invoke(app, ["create-user"], env=env), 1)
    assert "refused to create user rag_short" in line
    from pymilvus import MilvusClient

    root = MilvusClient(uri=auth_milvus.uri, token=auth_milvus.root_token, timeout=30)
    try:
        assert "rag_short" not in root.list_roles()  # nothing left behind
    finally:
        root.close()
