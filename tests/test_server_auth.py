"""Who gets in: login sessions that expire and end on logout (on every worker), the
failed-key limit, and request refusals that used to be 500s.

Real ASGI through FastAPI's TestClient and the real local OpenAI-compatible server, over a
retriever that serves fixed passages (no Milvus: these are fast). Time is a clock the tests
move by hand: nothing here sleeps or depends on how fast the machine is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import SecretStr

from milvus_rag.auth import AuthLimiter, Sessions, SessionStore
from milvus_rag.errors import ConfigError
from milvus_rag.server import COOKIE_NAME, create_app
from milvus_rag.settings import Settings, load_settings
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer

AUTH_KEY = "k3y-for-auth-tests"
AUTH_BEARER = {"Authorization": f"Bearer {AUTH_KEY}"}
AUTH_CHAT = {"messages": [{"role": "user", "content": "Where does Milvus store data?"}]}


class Passages(BaseRetriever):
    """Two fixed passages, whatever the question."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(
                page_content="Milvus stores data in object storage.", metadata={"source": "a"}
            ),
            Document(page_content="Metadata lives in etcd.", metadata={"source": "b"}),
        ]


class Clock:
    """A clock the test moves (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_app(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    """``make_app(clock=..., sessions=..., **server settings)``: an app behind :data:`AUTH_KEY`."""
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")

    def build(
        clock: Clock | None = None, sessions: SessionStore | None = None, **server: Any
    ) -> Any:
        config = base_config(tmp_path / "unused.db", tiny_model_dir, llm)
        config["server"] = server
        settings = load_settings(overrides=config)
        keyed = settings.server.model_copy(update={"api_key": SecretStr(AUTH_KEY)})
        settings = settings.model_copy(update={"server": keyed})
        return create_app(settings, retriever=Passages(), sessions=sessions, clock=clock)

    return build


def _session_cookie(client: TestClient) -> str:
    response = client.get("/login", params={"key": AUTH_KEY}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(client.cookies[COOKIE_NAME])


def _with_cookie(client: TestClient, cookie: str) -> int:
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, cookie)
    status = client.get("/v1/models").status_code
    client.cookies.clear()
    return status


# -- sessions ------------------------------------------------------------------------


def test_sessions_expire_after_session_ttl(make_app: Callable[..., Any]) -> None:
    clock = Clock()
    with TestClient(make_app(clock=clock, session_ttl=600)) as client:
        response = client.get("/login", params={"key": AUTH_KEY}, follow_redirects=False)
        assert "Max-Age=600" in response.headers["set-cookie"]  # the browser forgets it too
        cookie = str(client.cookies[COOKIE_NAME])
        assert AUTH_KEY not in cookie
        assert _with_cookie(client, cookie) == 200
        clock.now += 599
        assert _with_cookie(client, cookie) == 200
        clock.now += 1  # the server refuses it, whatever the browser keeps
        assert _with_cookie(client, cookie) == 401
        assert client.get("/v1/models", headers=AUTH_BEARER).status_code == 200  # keys never expire


def test_sessions_last_twelve_hours_by_default(make_app: Callable[..., Any]) -> None:
    clock = Clock()
    with TestClient(make_app(clock=clock)) as client:
        cookie = _session_cookie(client)
        clock.now += 12 * 3600 - 1
        assert _with_cookie(client, cookie) == 200
        clock.now += 1
        assert _with_cookie(client, cookie) == 401


def test_every_login_gets_a_new_cookie(make_app: Callable[..., Any]) -> None:
    with TestClient(make_app()) as client:
        first = _session_cookie(client)
        client.cookies.clear()
        second = _session_cookie(client)
        assert first != second
        assert _with_cookie(client, first) == 200 and _with_cookie(client, second) == 200


def test_logout_ends_the_session_on_the_server(make_app: Callable[..., Any]) -> None:
    with TestClient(make_app()) as client:
        other = _session_cookie(client)  # another browser's session
        client.cookies.clear()
        cookie = _session_cookie(client)
        response = client.get("/logout", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert COOKIE_NAME not in client.cookies  # the browser's copy is cleared...
        assert _with_cookie(client, cookie) == 401  # ...and a kept copy opens nothing
        assert _with_cookie(client, other) == 200  # other sessions go on
        client.cookies.set(COOKIE_NAME, cookie)
        assert client.get("/rag/playground/", headers={"Accept": "text/html"}).url.path == (
            "/login"
        )


def test_forged_and_tampered_cookies_open_nothing(make_app: Callable[..., Any]) -> None:
    import hashlib
    import hmac

    with TestClient(make_app()) as client:
        cookie = _session_cookie(client)
        sid, expires, mac = cookie.split(".")
        old_style = hmac.new(AUTH_KEY.encode(), b"milvus-rag login cookie", "sha256").hexdigest()
        for forged in (
            f"{sid}.{int(expires) + 10**6}.{mac}",  # a later expiry
            f"{'0' * 32}.{expires}.{mac}",  # another session id
            f"{sid}.{expires}.{'0' * 64}",
            f"{sid}.{expires}",
            old_style,  # the cookie of earlier versions: a digest of the key
            hashlib.sha256(AUTH_KEY.encode()).hexdigest(),
            "",
            "a.1.b.c",
        ):
            assert _with_cookie(client, forged) == 401, forged


def test_sessions_are_shared_by_workers(make_app: Callable[..., Any]) -> None:
    """Two apps on one store stand for two workers of ``serve --workers 2``."""
    store = SessionStore.shared()
    assert store.folder is not None and store.folder.stat().st_mode & 0o777 == 0o700
    try:
        with (
            TestClient(make_app(sessions=store)) as one,
            TestClient(make_app(sessions=store)) as two,
            TestClient(make_app()) as elsewhere,  # another server run: another secret
        ):
            cookie = _session_cookie(one)
            assert _with_cookie(two, cookie) == 200  # opened on one, valid on the other
            assert _with_cookie(elsewhere, cookie) == 401
            two.cookies.set(COOKIE_NAME, cookie)
            assert two.get("/logout", follow_redirects=False).status_code == 303
            assert _with_cookie(one, cookie) == 401  # logged out on two, ended on one
            assert _with_cookie(two, cookie) == 401
    finally:
        store.close()
    assert not store.folder.exists()


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


@pytest.mark.parametrize(
    ("value", "loads"),
    [("1", True), ("86400", True), ("0", False), ("-5", False), ("abc", False), ("1e9", False)],
)
def test_session_ttl_setting(monkeypatch: pytest.MonkeyPatch, value: str, loads: bool) -> None:
    assert Settings().server.session_ttl == 12 * 3600
    monkeypatch.setenv("MILVUS_RAG_SERVER__SESSION_TTL", value)
    if loads:
        assert load_settings().server.session_ttl == int(value)
    else:
        with pytest.raises(ConfigError, match="invalid setting server.session_ttl") as err:
            load_settings()
        assert "\n" not in str(err.value)


# -- failed authentications -----------------------------------------------------------


def test_wrong_keys_are_limited_per_client_address(
    make_app: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    app = make_app(clock=clock, max_auth_failures=3)  # a minute refills 3: one per 20 s
    guesses = [f"guess-{i}-{AUTH_KEY[:4]}" for i in range(5)]
    with (
        caplog.at_level(logging.INFO),
        TestClient(app, client=("203.0.113.7", 40000)) as attacker,
        TestClient(app, client=("198.51.100.2", 40000)) as neighbour,
    ):
        cookie = _session_cookie(attacker)  # a session opened before the guessing
        attacker.cookies.clear()
        for guess in guesses[:3]:
            response = attacker.get("/v1/models", headers={"Authorization": f"Bearer {guess}"})
            assert response.status_code == 401
        response = attacker.get("/v1/models", headers={"Authorization": f"Bearer {guesses[3]}"})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "20"
        assert response.json()["error"]["message"].endswith("try again in 20 s")
        # Even the right key is refused (not checked) until then: no oracle for guesses.
        assert attacker.get("/v1/models", headers=AUTH_BEARER).status_code == 429
        assert attacker.post("/v1/chat/completions", json=AUTH_CHAT, headers=AUTH_BEARER).status_code == 429
        login = attacker.get("/login", params={"key": AUTH_KEY}, follow_redirects=False)
        assert login.status_code == 429 and login.headers["retry-after"] == "20"
        assert "try again in 20 s" in login.text and COOKIE_NAME not in login.cookies
        # Another address, and a session opened before, are not affected.
        assert neighbour.get("/v1/models", headers=AUTH_BEARER).status_code == 200
        assert _with_cookie(attacker, cookie) == 200
        clock.now += 19
        assert attacker.get("/v1/models", headers=AUTH_BEARER).status_code == 429
        clock.now += 1
        assert attacker.get("/v1/models", headers=AUTH_BEARER).status_code == 200
        # One failure regained: one more guess, then 429 again.
        response = attacker.get("/v1/models", headers={"Authorization": f"Bearer {guesses[4]}"})
        assert response.status_code == 401
        assert attacker.get("/v1/models", headers=AUTH_BEARER).status_code == 429

    failures = [r for r in caplog.records if r.name == "milvus_rag.server"]
    assert len(failures) == 4  # each wrong key once; the refused attempts were never checked
    assert all(r.levelno == logging.WARNING for r in failures)
    assert "failed authentication from 203.0.113.7 on GET /v1/models" in failures[0].getMessage()
    server = ("milvus_rag", "uvicorn", "fastapi", "starlette", "langserve")  # not the client's
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(server))
    assert "429" in logged  # the access log saw the refusals
    for guess in guesses:
        assert guess not in logged
    assert AUTH_KEY not in logged


def test_wrong_keys_on_the_login_form_count_too(make_app: Callable[..., Any]) -> None:
    clock = Clock()
    with TestClient(make_app(clock=clock, max_auth_failures=2)) as client:
        for guess in ("a", "b"):
            form = client.post(
                "/login",
                content=f"key={guess}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert form.status_code == 401 and "That is not the server" in form.text
        response = client.get("/v1/models", headers={"Authorization": "Bearer c"})
        assert response.status_code == 429 and response.headers["retry-after"] == "30"
        # /ready shows its messages to key holders only: a throttled key is not checked.
        ready = client.get("/ready", headers=AUTH_BEARER)
        assert all("message" not in check for check in ready.json()["checks"].values())
        clock.now += 30
        assert _session_cookie(client)
        # Requests without any key are no guesses: never counted, never throttled.
        client.cookies.clear()
        for _ in range(5):
            assert client.get("/v1/models").status_code == 401


def test_a_wrong_key_on_ready_counts(make_app: Callable[..., Any]) -> None:
    with TestClient(make_app(clock=Clock(), max_auth_failures=1)) as client:
        ready = client.get("/ready", headers={"Authorization": "Bearer nope"})
        assert all("message" not in check for check in ready.json()["checks"].values())
        assert client.get("/v1/models", headers=AUTH_BEARER).status_code == 429


def test_limiter_forgets_the_oldest_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    import milvus_rag.auth

    monkeypatch.setattr(milvus_rag.auth, "_MAX_CLIENTS", 3)
    limiter = AuthLimiter(1, clock=lambda: 0.0)
    for client in ("a", "b", "c", "d"):
        limiter.failed(client)
    assert limiter.wait("a") == 0  # forgotten: memory stays bounded under many addresses
    assert [limiter.wait(c) for c in "bcd"] == [60, 60, 60]


def test_settings_bound_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().server.max_auth_failures == 10
    monkeypatch.setenv("MILVUS_RAG_SERVER__MAX_AUTH_FAILURES", "0")
    with pytest.raises(ConfigError, match="invalid setting server.max_auth_failures"):
        load_settings()


# -- refusals that were 500s ------------------------------------------------------------

BIG = b"1" * 5000  # Python reads at most 4300 digits into an int (a ValueError)


@pytest.mark.parametrize(
    ("route", "body", "needle"),
    [
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}',
            "stop sequences must be valid Unicode text",
        ),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "hi"}], "stop": "a\\udfffb"}',
            "stop sequences must be valid Unicode text",
        ),
        ("/rag/invoke", b'{"input": ' + BIG + b"}", "integer of more than 4300 digits"),
        ("/retrieve/invoke", b'{"input": ' + BIG + b"}", "integer of more than 4300 digits"),
        ("/rag/batch", b'{"inputs": ["hi", ' + BIG + b"]}", "integer of more than 4300 digits"),
        (
            "/retrieve/invoke",
            b'{"input": "hi", "config": {"configurable": {"k": ' + BIG + b"}}}",
            "integer of more than 4300 digits",
        ),
    ],
)
def test_refusals_that_were_500s(
    make_app: Callable[..., Any], route: str, body: bytes, needle: str
) -> None:
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        response = client.post(
            route, content=body, headers={**AUTH_BEARER, "content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert needle in response.text
