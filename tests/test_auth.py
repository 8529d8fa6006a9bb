"""`milvus_rag.auth`: revocations forgotten once expired, the failed-key limiter's memory."""

from __future__ import annotations

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from milvus_rag.auth import AuthLimiter, Sessions, SessionStore
from tests.support.server_auth import AUTH_KEY, Clock


def test_revocations_are_forgotten_once_expired() -> None:
    clock = Clock()
    store = SessionStore.shared()
    assert store.folder is not None
    try:
        sessions = Sessions(store, AUTH_KEY, ttl=60, clock=clock)
        first, second = sessions.issue(), sessions.issue()
        sessions.revoke(first)
        assert len(list(store.folder.iterdir())) == 1
        clock.now += 60
        sessions.revoke(second)  # the first one has expired: its mark goes
        assert [p.name for p in store.folder.iterdir()] == [second.split(".")[0]]
        assert not sessions.valid(first) and not sessions.valid(second)
    finally:
        store.close()


def test_limiter_forgets_the_oldest_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    import milvus_rag.auth

    monkeypatch.setattr(milvus_rag.auth, "_MAX_CLIENTS", 3)
    limiter = AuthLimiter(1, clock=lambda: 0.0)
    for client in ("a", "b", "c", "d"):
        limiter.failed(client)
    assert limiter.wait("a") == 0  # forgotten: memory stays bounded under many addresses
    assert [limiter.wait(c) for c in "bcd"] == [60, 60, 60]
