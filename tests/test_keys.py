"""`milvus_rag.keys`: named keys with roles and scopes, the keys file, rate limits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.keys import KeyRing, KeysFile, Principal, RateLimiter, digest_of


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
