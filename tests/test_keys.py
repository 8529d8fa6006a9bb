"""Named keys with roles and scopes: the keys file, ``milvus-rag keys``, the server's gate."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError
from milvus_rag.keys import KeyRing, KeysFile, Principal, RateLimiter, digest_of
from milvus_rag.server import COOKIE_NAME, create_app
from milvus_rag.settings import Settings

runner = CliRunner()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_file_keeps_digests_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    keys = KeysFile(path)
    key = keys.add("alice", "reader", ["finance", "hr"], rate_per_minute=30)
    text = path.read_text()
    assert key not in text and digest_of(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (alice,) = keys.load()
    assert (alice.name, alice.role, alice.scopes, alice.rate_per_minute) == (
        "alice",
        "reader",
        ("finance", "hr"),
        30,
    )
    assert KeyRing(path).lookup(key) == alice
    assert KeyRing(path).lookup(key + "x") is None
    with pytest.raises(ConfigError, match="exists"):
        keys.add("alice", "reader", ["finance"])
    assert keys.revoke("alice") and not keys.revoke("alice")
    assert KeyRing(path).lookup(key) is None


@pytest.mark.parametrize(
    ("name", "role", "scopes", "message"),
    [
        ("al ice", "reader", ["a"], "not valid"),
        ("alice", "root", ["a"], "role must be one of"),
        ("alice", "writer", [], "needs at least one scope"),
        ("alice", "reader", ["a b"], "scope"),
        ("alice", "reader", ["x" * 65], "scope"),
    ],
)
def test_bad_keys_are_one_clear_error(
    tmp_path: Path, name: str, role: str, scopes: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        KeysFile(tmp_path / "keys.yaml").add(name, role, scopes)
    assert not (tmp_path / "keys.yaml").exists()


def test_an_admin_key_reads_every_scope(tmp_path: Path) -> None:
    key = KeysFile(tmp_path / "k.yaml").add("root", "admin", [])
    admin = KeyRing(tmp_path / "k.yaml").lookup(key)
    assert admin is not None and admin.scopes is None and admin.reads("anything")
    assert admin.may("writer") and not Principal("r", "reader", ("a",)).may("writer")


def test_a_broken_keys_file_refuses_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key = KeysFile(path).add("alice", "reader", ["a"])
    ring = KeyRing(path)
    assert ring.lookup(key) is not None
    path.write_text("keys: [{name: alice, role: reader}]\n")
    assert ring.lookup(key) is None  # fails closed


def test_the_rate_limit_is_a_token_bucket_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    alice, bob = Principal("alice", "reader", ("a",)), Principal("bob", "reader", ("a",), "", 1)
    assert [limiter.wait(alice) for _ in range(60)] == [0] * 60
    assert limiter.wait(alice) == 1
    assert limiter.wait(bob) == 0 and limiter.wait(bob) == 60  # its own rate wins
    now[0] += 1
    assert limiter.wait(alice) == 0


def test_keys_commands(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    added = runner.invoke(
        app, ["keys", "add", "alice", "--role", "writer", "--scope", "hr", "--keys-file", str(path)]
    )
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("mrag-") and key not in path.read_text()
    listed = runner.invoke(app, ["keys", "list", "--json", "--keys-file", str(path)])
    assert json.loads(listed.stdout)["keys"] == [
        {"name": "alice", "role": "writer", "scopes": ["hr"], "rate_per_minute": None}
    ]
    assert key not in listed.stdout
    again = runner.invoke(app, ["keys", "add", "alice", "--scope", "hr", "--keys-file", str(path)])
    assert again.exit_code == 2 and again.stderr.count("\n") == 1, again.output
    assert runner.invoke(app, ["keys", "revoke", "alice", "--keys-file", str(path)]).exit_code == 0
    gone = runner.invoke(app, ["keys", "revoke", "alice", "--keys-file", str(path)])
    assert gone.exit_code == 2 and "no key named alice" in gone.stderr
    nowhere = runner.invoke(app, ["keys", "list"])
    assert nowhere.exit_code == 2 and "server.keys_file" in nowhere.stderr


# -- the server ---------------------------------------------------------------------------


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "server-keys.yaml"


@pytest.fixture
def keys_file_app(make_settings: Callable[..., Settings], keys_path: Path) -> Callable[..., TestClient]:
    def client(**server: object) -> TestClient:
        settings = make_settings(server={"keys_file": str(keys_path), **server})
        return TestClient(create_app(settings))

    return client


def test_a_revoked_key_is_refused_on_its_next_request(
    keys_file_app: Callable[..., TestClient], keys_path: Path
) -> None:
    key = KeysFile(keys_path).add("alice", "reader", ["hr"])
    other = KeysFile(keys_path).add("bob", "reader", ["hr"])
    with keys_file_app() as client:
        assert client.get("/v1/models", headers=_bearer(key)).status_code == 200
        assert client.get("/v1/models", headers=_bearer(key + "x")).status_code == 401
        client.get("/login", params={"key": key}, follow_redirects=False)
        cookie = client.cookies[COOKIE_NAME]
        assert cookie.startswith("alice~")
        assert client.get("/v1/models").status_code == 200  # the session
        revoked = runner.invoke(app, ["keys", "revoke", "alice", "--keys-file", str(keys_path)])
        assert revoked.exit_code == 0
        assert client.get("/v1/models").status_code == 401  # its session ended with it
        client.cookies.clear()
        assert client.get("/v1/models", headers=_bearer(key)).status_code == 401
        assert client.get("/v1/models", headers=_bearer(other)).status_code == 200


def test_the_single_api_key_is_an_admin_beside_the_file(
    keys_file_app: Callable[..., TestClient], keys_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", "the-admin-key")
    key = KeysFile(keys_path).add("alice", "reader", ["hr"])
    with keys_file_app() as client:
        for given in ("the-admin-key", key):
            assert client.get("/v1/models", headers=_bearer(given)).status_code == 200


def test_keys_from_the_environment(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = {"name": "svc", "role": "reader", "scopes": ["hr"], "hash": digest_of("k-123456")}
    monkeypatch.setenv("MILVUS_RAG_SERVER__KEYS", json.dumps([record]))
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/v1/models", headers=_bearer("k-123456")).status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_a_key_over_its_rate_gets_429(keys_file_app: Callable[..., TestClient], keys_path: Path) -> None:
    key = KeysFile(keys_path).add("alice", "reader", ["hr"])
    slow = KeysFile(keys_path).add("bob", "reader", ["hr"], rate_per_minute=1)
    with keys_file_app(key_rate_per_minute=3) as client:
        codes = [client.get("/v1/models", headers=_bearer(key)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = client.get("/v1/models", headers=_bearer(key))
        assert int(refused.headers["Retry-After"]) >= 1
        assert "alice" in refused.json()["error"]["message"] and key not in refused.text
        assert client.get("/v1/models", headers=_bearer(slow)).status_code == 200
        assert client.get("/v1/models", headers=_bearer(slow)).status_code == 429


def test_a_broken_keys_file_stops_the_server_at_start(
    make_settings: Callable[..., Settings], keys_path: Path
) -> None:
    keys_path.write_text("keys: {}\n")
    with pytest.raises(ConfigError, match="must hold `keys:` with a list"):
        create_app(make_settings(server={"keys_file": str(keys_path)}))


def test_metrics_name_the_key_never_the_key(
    keys_file_app: Callable[..., TestClient], keys_path: Path
) -> None:
    alice = KeysFile(keys_path).add("alice", "reader", ["hr"])
    boss = KeysFile(keys_path).add("boss", "admin", [])
    with keys_file_app() as client:
        assert client.get("/v1/models", headers=_bearer(alice)).status_code == 200
        scraped = client.get("/metrics", headers=_bearer(boss))
        assert scraped.status_code == 200
        assert 'key="alice"' in scraped.text
        assert alice not in scraped.text and boss not in scraped.text
