"""`milvus_rag.server.auth`: API keys and the keys file at the gate, login sessions and cookies,
the failed-key limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError
from milvus_rag.keys import KeysFile, digest_of
from milvus_rag.server import COOKIE_NAME, create_app
from milvus_rag.settings import Settings

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from pydantic import SecretStr

from milvus_rag.auth import SessionStore
from milvus_rag.settings import load_settings
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer
from tests.support.passages import Passages
from tests.support.server import (
    CHAT,
    QUESTION,
    _sse_events,
)
from tests.support.server_auth import AUTH_KEY, Clock
from tests.support.server_ops import BEARER, KEY

runner = CliRunner()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- the server ---------------------------------------------------------------------------


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "server-keys.yaml"


@pytest.fixture
def keys_file_app(
    make_settings: Callable[..., Settings], keys_path: Path
) -> Callable[..., TestClient]:
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


def test_a_key_over_its_rate_gets_429(
    keys_file_app: Callable[..., TestClient], keys_path: Path
) -> None:
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


@pytest.mark.slow
def test_api_key(
    settings: Settings, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", "s3cret")
    with TestClient(create_app(make_settings())) as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = c.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert response.status_code == 401
            assert "API key" in response.json()["error"]["message"]
        assert c.post("/rag/invoke", json={"input": QUESTION}).status_code == 401
        assert c.post("/retrieve/invoke", json={"input": QUESTION}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        ok = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


AUTH_BEARER = {"Authorization": f"Bearer {AUTH_KEY}"}


AUTH_CHAT = {"messages": [{"role": "user", "content": "Where does Milvus store data?"}]}


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
        assert (
            attacker.post("/v1/chat/completions", json=AUTH_CHAT, headers=AUTH_BEARER).status_code
            == 429
        )
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


PAGE = {"Accept": "text/html,application/xhtml+xml"}


def _login(client: TestClient) -> None:
    response = client.get("/login", params={"key": KEY}, follow_redirects=False)
    assert response.status_code == 303, response.text


# -- 2. browsers: login cookie, docs ---------------------------------------------------
@pytest.mark.slow
def test_login_sets_a_strict_http_only_cookie(keyed: TestClient) -> None:
    response = keyed.get("/login", params={"key": KEY}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/rag/playground/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http
    assert KEY not in cookie  # a digest of the key, not the key


@pytest.mark.slow
def test_login_cookie_is_secure_over_https(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    with TestClient(create_app(make_settings()), base_url="https://testserver") as client:
        response = client.get("/login", params={"key": KEY}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.slow
def test_login_form_and_wrong_keys(keyed: TestClient) -> None:
    form = keyed.get("/login", params={"next": "/docs"})
    assert form.status_code == 200 and "<form" in form.text
    assert 'name="next" value="/docs"' in form.text
    posted = keyed.post(
        "/login",
        content=f"key={KEY}&next=%2Fdocs",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/docs"
    assert COOKIE_NAME in posted.headers["set-cookie"]
    keyed.cookies.clear()
    for wrong in ("nope", KEY + "x", KEY[:-1], ""):
        response = keyed.get("/login", params={"key": wrong}, follow_redirects=False)
        assert response.status_code == 401, wrong
        assert "set-cookie" not in response.headers
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = keyed.get(
            "/login", params={"key": KEY, "next": elsewhere}, follow_redirects=False
        )
        assert response.headers["location"] == "/rag/playground/", elsewhere


@pytest.mark.slow
def test_the_cookie_opens_the_playground_api_and_docs(keyed: TestClient) -> None:
    guarded = ["/rag/playground/", "/docs", "/redoc", "/openapi.json", "/v1/models"]
    for path in guarded:
        assert keyed.get(path).status_code == 401, path
    # A browser asking for a page is sent to the login form, and back afterwards.
    response = keyed.get("/rag/playground/", headers=PAGE, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/rag/playground/"

    _login(keyed)
    for path in guarded:
        assert keyed.get(path).status_code == 200, path
    assert keyed.post("/rag/invoke", json={"input": QUESTION}).status_code == 200
    assert keyed.post("/retrieve/invoke", json={"input": QUESTION}).status_code == 200
    assert keyed.post("/v1/chat/completions", json=CHAT).status_code == 200
    streamed = keyed.post("/rag/stream_log", json={"input": {"question": QUESTION}})
    assert streamed.status_code == 200 and _sse_events(streamed.text)[-1][0] == "end"

    keyed.cookies.clear()
    keyed.cookies.set(COOKIE_NAME, "0" * 64)  # a forged cookie
    assert keyed.post("/rag/invoke", json={"input": QUESTION}).status_code == 401
    keyed.cookies.clear()
    assert keyed.post("/rag/invoke", json={"input": QUESTION}, headers=BEARER).status_code == 200


@pytest.mark.slow
def test_logout_clears_the_cookie(keyed: TestClient) -> None:
    _login(keyed)
    assert keyed.get("/v1/models").status_code == 200
    response = keyed.get("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert keyed.get("/v1/models").status_code == 401
