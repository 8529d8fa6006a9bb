"""The deployment files: compose.yaml, Dockerfile, .dockerignore and .gitignore, checked
without Docker.

There is no Docker engine on the build machines: these tests parse the files and hold
them to what README's "Deploy" section promises (Milvus standalone with etcd and MinIO,
authentication on, milvus-rag connecting as its own Milvus user made at first start by
``milvus-rag create-user``, never as root, port 9091 not published, the app published on
127.0.0.1, secrets from the environment and a git-ignored .env, healthchecks, a non-root
image serving on 0.0.0.0 inside its container with the model mounted). The command itself
is tested against a real Milvus server with authentication on (tests/test_access.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from milvus_rag.settings import load_settings, unknown_env_vars

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|API_KEY|SECRET", re.IGNORECASE)
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?message}`` (Compose interpolation).
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _published(port: Any) -> tuple[str | None, str]:
    """(host port or None, container port) of one ``ports`` entry, short or long syntax."""
    if isinstance(port, dict):
        published = port.get("published")
        return (str(published) if published is not None else None, str(port["target"]))
    parts = str(port).split("/")[0].rsplit(":", 2)
    if len(parts) == 1:
        return None, parts[0]  # a container port Docker maps to a random host port
    return parts[-2], parts[-1]


def _resolved(value: str) -> str:
    """``value`` as Compose would give it with every variable set to a placeholder."""
    return VARIABLE.sub(lambda m: m.group(3) if m.group(2) == "-" else "from-env", value)


def test_compose_runs_milvus_standalone_with_etcd_and_minio(services: dict[str, Any]) -> None:
    assert set(services) == {"etcd", "minio", "milvus", "milvus-init", "milvus-rag"}
    assert services["etcd"]["image"].startswith("quay.io/coreos/etcd:")
    assert services["minio"]["image"].startswith("minio/minio:")
    milvus = services["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.5")  # BM25 (hybrid) needs 2.5
    assert milvus["command"] == ["milvus", "run", "standalone"]
    env = _env(milvus)
    assert env["ETCD_ENDPOINTS"] == "etcd:2379" and env["MINIO_ADDRESS"] == "minio:9000"


def test_milvus_authentication_is_on(services: dict[str, Any]) -> None:
    env = _env(services["milvus"])
    assert env["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert VARIABLE.fullmatch(env["COMMON_SECURITY_DEFAULTROOTPASSWORD"])  # not "Milvus"


def test_port_9091_is_not_published(services: dict[str, Any]) -> None:
    published = {
        name: [_published(port) for port in service.get("ports") or []]
        for name, service in services.items()
    }
    for name, ports in published.items():
        for host, container in ports:
            assert "9091" not in (host, container), name
    assert published["milvus"] == [("19530", "19530")]
    assert services["milvus"]["ports"] == ["127.0.0.1:19530:19530"]  # this machine only
    assert published["etcd"] == [] and published["minio"] == []


def test_milvus_rag_connects_as_its_own_user_not_root(services: dict[str, Any]) -> None:
    env = _env(services["milvus-rag"])
    assert env["MILVUS_RAG_MILVUS__URI"] == "http://milvus:19530"
    own_user = r"milvus_rag:\$\{MILVUS_USER_PASSWORD(:\?[^}]*)?\}"
    assert re.fullmatch(own_user, env["MILVUS_RAG_MILVUS__TOKEN"])
    assert VARIABLE.fullmatch(env["MILVUS_RAG_SERVER__API_KEY"])
    assert services["milvus-rag"]["build"] == "."
    # Root's password reaches the one-shot service that creates the user, and no other.
    for name, service in services.items():
        uses_root = any("MILVUS_ROOT_PASSWORD" in value for value in _env(service).values())
        assert uses_root == (name in ("milvus", "milvus-init")), name


def test_milvus_init_creates_the_user_before_milvus_rag_starts(services: dict[str, Any]) -> None:
    init = services["milvus-init"]
    assert init["image"] == services["milvus-rag"]["image"] and init["build"] == "."
    assert init["command"] == ["create-user"]  # the image's entry point is milvus-rag
    assert init["restart"] == "no"  # one-shot: runs at each `up`, keeps what exists
    env = _env(init)
    assert env["MILVUS_RAG_MILVUS__URI"] == "http://milvus:19530"
    # The same user and password as milvus-rag's; the administrator's token is root's.
    assert (
        env["MILVUS_RAG_MILVUS__TOKEN"].split(":?")[0]
        == (_env(services["milvus-rag"])["MILVUS_RAG_MILVUS__TOKEN"].split(":?")[0])
    )
    assert re.fullmatch(r"root:\$\{MILVUS_ROOT_PASSWORD(:\?[^}]*)?\}", env["MILVUS_ADMIN_TOKEN"])
    assert init["depends_on"] == {"milvus": {"condition": "service_healthy"}}
    assert services["milvus-rag"]["depends_on"]["milvus-init"] == {
        "condition": "service_completed_successfully"
    }
    # The command exists and reads the administrator's token from that variable.
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    help_text = CliRunner().invoke(app, ["create-user", "--help"]).output
    assert "MILVUS_ADMIN_TOKEN" in help_text


def test_every_image_service_has_the_model_its_settings_need(services: dict[str, Any]) -> None:
    """The image sets MILVUS_RAG_EMBEDDING__MODEL_DIR, which settings check at load: the
    image holds that folder (fetched at build time), so no service mounts one."""
    steps = _instructions((REPO / "Dockerfile").read_text())
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    env = " ".join(a for kind, a in steps if kind == "ENV")
    model_dir = re.search(r"MILVUS_RAG_EMBEDDING__MODEL_DIR=(\S+)", env)
    assert model_dir
    folder = model_dir.group(1).replace("${EMBEDDING_FOLDER}", args["EMBEDDING_FOLDER"])
    download = next(a for kind, a in steps if kind == "RUN" and "model download" in a)
    assert "milvus-rag model download" in download and '--model "$EMBEDDING_MODEL"' in download
    target = re.search(r'model download "([^"]+)"', download)
    assert (
        target and target.group(1).replace("$EMBEDDING_FOLDER", args["EMBEDDING_FOLDER"]) == folder
    )
    # Downloaded before the image goes offline for the hub client.
    kinds = [kind for kind, _ in steps]
    offline = next(i for i, (k, a) in enumerate(steps) if k == "ENV" and "HF_HUB_OFFLINE=1" in a)
    assert steps.index(("RUN", download)) < offline
    for service in services.values():
        if service.get("image") == "milvus-rag:latest":
            assert "MILVUS_RAG_EMBEDDING__MODEL_DIR" not in (service.get("environment") or {})
    assert "USER" in kinds


def test_the_app_is_published_on_this_machine_only_by_default(services: dict[str, Any]) -> None:
    (port,) = services["milvus-rag"]["ports"]
    host, container = _published(port)
    assert container == "8000" and host == "8000"
    address = str(port).rsplit(":", 2)[0]
    assert _resolved(address) == "127.0.0.1"  # ${PUBLISH_ADDRESS:-127.0.0.1}
    assert VARIABLE.fullmatch(address)  # which PUBLISH_ADDRESS may change


def test_gitignore_keeps_the_env_file_out_of_git() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert ".env" in ignored and ".env.*" in ignored
    assert not any(line.startswith("!") and ".env" in line for line in ignored)  # no exception


def test_no_secret_is_written_in_compose(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key):
                assert VARIABLE.search(value), (name, key)
                user_name_only = ("", "root:", "milvus_rag:")
                assert VARIABLE.sub("", value) in user_name_only, (name, key)


def test_milvus_rag_settings_from_compose_load(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MILVUS_RAG_ variable compose sets is a real setting with a valid value."""
    env = {key: _resolved(value) for key, value in _env(services["milvus-rag"]).items()}
    assert unknown_env_vars(env) == []
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MILVUS_RAG_EMBEDDING__MODEL_DIR", raising=False)
    s = load_settings()
    assert s.milvus.uri == "http://milvus:19530" and not s.milvus.is_lite
    token = s.milvus.token
    assert token is not None and token.get_secret_value() == "milvus_rag:from-env"
    assert s.milvus.index_type == "AUTOINDEX"
    assert s.server.api_key is not None
    assert s.llm.preset == "nvidia" and s.llm.api_key is None  # no key: retrieval only


def test_healthchecks_and_start_order(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":  # a one-shot step: compose waits for its exit
            continue
        assert service.get("healthcheck", {}).get("test"), name
    assert "localhost:9091/healthz" in " ".join(services["milvus"]["healthcheck"]["test"])
    assert "/ready" in " ".join(services["milvus-rag"]["healthcheck"]["test"])
    healthy = {"condition": "service_healthy"}
    assert services["milvus"]["depends_on"] == {"etcd": healthy, "minio": healthy}
    done = {"condition": "service_completed_successfully"}
    assert services["milvus-rag"]["depends_on"] == {"milvus": healthy, "milvus-init": done}


def test_the_model_download_command_exists() -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    help_text = CliRunner().invoke(app, ["model", "download", "--help"]).output
    assert "--model" in help_text and "HF_ENDPOINT" in help_text


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_serve_as_a_non_root_user() -> None:
    steps = _instructions((REPO / "Dockerfile").read_text())
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    installs = [args for kind, args in steps if kind == "RUN" and "pip install" in args]
    assert any(".[server" in install and "--no-deps" in install for install in installs)
    assert any("mcp]" in install for install in installs)
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    (healthcheck,) = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert "CMD" in healthcheck and "/ready" in healthcheck
    command = " ".join(args for kind, args in steps if kind in ("ENTRYPOINT", "CMD"))
    assert re.search(r'"milvus-rag".*"serve", "--host", "0.0.0.0"', command)


def test_dockerignore_keeps_secrets_and_data_out() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", "*.db", "models/", ".git"} <= ignored
