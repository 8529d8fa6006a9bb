"""Operating the server: the port check, browser login and docs, /ready, the access log,
what documents show clients, and retrieval-only mode without the LLM's key.

Real ASGI through FastAPI's TestClient over Milvus Lite in a temp dir, the tiny model
and the local OpenAI-compatible server; documents are ingested by ``milvus_rag.sync``
so they carry the real ingest bookkeeping in their metadata.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("langserve")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from milvus_rag.chains import INTERNAL_METADATA

from milvus_rag.server import COOKIE_NAME, create_app
from milvus_rag.settings import Settings
from tests.support.corpus import CHAIN_DOCS
from tests.support.openai_server import FakeOpenAIServer, closed_port
from tests.test_server import (  # the same helpers and per-test SSE state
    CHAT,
    QUESTION,
    _fill,
    _sse_events,
)

pytestmark = pytest.mark.slow

KEY = "k3y-for-tests"
BEARER = {"Authorization": f"Bearer {KEY}"}
PAGE = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def keyed(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A client of an app over a filled collection that needs :data:`KEY`."""
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    with TestClient(create_app(_fill(make_settings()))) as client:
        yield client


@pytest.fixture
def filled(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose collection (at ``tmp_path/milvus.db``) holds the chain documents."""
    return _fill(make_settings())


def _login(client: TestClient) -> None:
    response = client.get("/login", params={"key": KEY}, follow_redirects=False)
    assert response.status_code == 303, response.text


# -- 1. serve checks the port first ------------------------------------------------------


def _serve_config(tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, port: int) -> Path:
    from tests.conftest import base_config

    config = base_config(tmp_path / "milvus.db", tiny_model_dir, llm)
    config["server"] = {"port": port}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_refuses_a_taken_port_before_anything_else(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # No collection at all: the port is checked before Milvus and the model.
        config = _serve_config(tmp_path, tiny_model_dir, llm, port)
        result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"port {port} is already in use" in lines[0] and "--port" in lines[0]
    assert "serving" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "milvus.db").exists()  # nothing was opened


@pytest.mark.parametrize("host", ["\x80", "h\u00e9\x00st", "\x1b]0;title\x07"])
def test_serve_refuses_a_host_that_is_no_host_name(
    host: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the fuzz test: a non-ASCII --host was a TypeError from the socket layer."""
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    config = _serve_config(tmp_path, tiny_model_dir, llm, closed_port())
    result = CliRunner().invoke(app, ["serve", "--host", host, "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "\x1b" not in lines[0], lines
    assert lines[0].startswith("error: cannot listen on ") and "--host" in lines[0]
    assert not (tmp_path / "milvus.db").exists()


def test_serve_listens_on_the_checked_socket(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    filled: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    port = closed_port()
    config = _serve_config(tmp_path, tiny_model_dir, llm, port)  # the filled collection
    served: list[int] = []

    def run(server: Any, sockets: list[socket.socket]) -> None:
        served.append(sockets[0].getsockname()[1])
        with socket.socket() as other, pytest.raises(OSError):  # the port is held
            other.bind(("127.0.0.1", port))

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert served == [port]
    assert result.stderr.splitlines()[-1].startswith(
        f"serving test_docs on http://127.0.0.1:{port}"
    )


# -- 2. browsers: login cookie, docs ---------------------------------------------------


def test_login_sets_a_strict_http_only_cookie(keyed: TestClient) -> None:
    response = keyed.get("/login", params={"key": KEY}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/rag/playground/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http
    assert KEY not in cookie  # a digest of the key, not the key


def test_login_cookie_is_secure_over_https(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    with TestClient(create_app(make_settings()), base_url="https://testserver") as client:
        response = client.get("/login", params={"key": KEY}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


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


def test_logout_clears_the_cookie(keyed: TestClient) -> None:
    _login(keyed)
    assert keyed.get("/v1/models").status_code == 200
    response = keyed.get("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert keyed.get("/v1/models").status_code == 401


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


def test_playground_page_schemas_have_no_null_types(keyed: TestClient) -> None:
    """LangServe's playground renders a blank page on ``{"type": "null"}`` options."""
    page = keyed.get("/rag/playground/", headers=BEARER).text
    found = re.findall(r"window\.(\w+_SCHEMA) = (.*);$", page, re.MULTILINE)
    assert {name for name, _ in found} == {"CONFIG_SCHEMA", "INPUT_SCHEMA", "OUTPUT_SCHEMA"}
    for name, text in found:
        schema = json.loads(text)
        assert '{"type": "null"}' not in json.dumps(schema), name
    config = json.loads(dict(found)["CONFIG_SCHEMA"])
    assert config["$defs"]["Configurable"]["properties"]["k"]["type"] == "integer"


# -- 3. /ready ---------------------------------------------------------------------------


def _ready(client: TestClient, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = client.get("/ready", **kwargs)
    return response.status_code, response.json()


def test_ready_when_everything_answers(keyed: TestClient) -> None:
    status, body = _ready(keyed, headers=BEARER)
    assert status == 200 and body["ready"] is True
    checks = body["checks"]
    assert list(checks) == ["milvus", "collection", "identity", "llm"]
    assert all(check["ok"] for check in checks.values())
    assert checks["llm"]["required"] is False
    assert f"holds {len(CHAIN_DOCS)} chunks" in checks["collection"]["message"]
    # Without the key: the verdicts only (messages name URIs and paths).
    status, body = _ready(keyed)
    assert status == 200
    assert all(set(check) == {"ok", "required"} for check in body["checks"].values())
    assert keyed.get("/health").json() == {"status": "ok"}


def test_not_ready_without_the_collection(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:  # no database file yet
        status, body = _ready(client)
        assert status == 503 and body["ready"] is False
        assert not body["checks"]["milvus"]["ok"]
        assert "no Milvus Lite database" in body["checks"]["milvus"]["message"]
        assert client.get("/health").status_code == 200
    _fill(make_settings())  # the database now exists, but not this collection
    with TestClient(create_app(make_settings(milvus={"collection": "other"}))) as client:
        status, body = _ready(client)
        assert status == 503
        assert body["checks"]["milvus"]["ok"]
        assert "collection other does not exist" in body["checks"]["collection"]["message"]
        assert not body["checks"]["identity"]["ok"]


def test_not_ready_when_the_model_differs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from tests.support.tiny_model import make_tiny_model

    _fill(make_settings())
    other = make_tiny_model(tmp_path / "other-model", hidden=16)
    with TestClient(create_app(make_settings(embedding={"model_dir": str(other)}))) as client:
        status, body = _ready(client)
    assert status == 503
    assert body["checks"]["collection"]["ok"]
    identity = body["checks"]["identity"]
    assert not identity["ok"] and "--recreate" in identity["message"]


def test_ready_reports_an_unreachable_llm_without_failing(
    make_settings: Callable[..., Settings],
) -> None:
    s = _fill(make_settings(llm={"base_url": f"http://127.0.0.1:{closed_port()}/v1"}))
    with TestClient(create_app(s)) as client:
        status, body = _ready(client)
    assert status == 200 and body["ready"] is True
    llm = body["checks"]["llm"]
    assert llm == {"ok": False, "required": False, "message": llm["message"]}
    assert "cannot be reached" in llm["message"]


def test_ready_when_the_llm_refuses_the_key(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    with TestClient(create_app(_fill(make_settings()))) as client:
        llm.script(status=401)
        status, body = _ready(client)
    assert status == 200
    assert "rejected the key in TEST_LLM_KEY" in body["checks"]["llm"]["message"]


@pytest.mark.slow
def test_health_is_alive_while_milvus_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(milvus={"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 2})
    with TestClient(create_app(s)) as client:
        assert client.get("/health").status_code == 200
        status, body = _ready(client)
    assert status == 503
    assert "cannot be reached" in body["checks"]["milvus"]["message"]
    assert body["checks"]["collection"]["ok"] is False


# -- 4. access log -----------------------------------------------------------------------

ACCESS = "milvus_rag.server.access"


@pytest.fixture(autouse=True)
def _access_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """``milvus-rag serve`` (run in-process by CLI tests) stops it propagating."""
    monkeypatch.setattr(logging.getLogger(ACCESS), "propagate", True)


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS]


def test_access_log_lines_hold_no_secrets_or_questions(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    caplog.set_level(logging.INFO, logger=ACCESS)
    secret_question = "What about the zebra-striped-secret-question?"
    with TestClient(create_app(_fill(make_settings()))) as client:
        client.get("/login", params={"key": KEY}, follow_redirects=False)
        cookie = client.cookies[COOKIE_NAME]
        client.post("/rag/invoke", json={"input": secret_question})  # with the cookie
        client.cookies.clear()
        client.post("/v1/chat/completions", json=CHAT, headers=BEARER)
        client.post(
            "/retrieve/invoke", json={"input": {"question": secret_question}}, headers=BEARER
        )
        client.post("/rag/invoke", json={"input": QUESTION})  # 401
        client.post("/rag/invoke", json={"input": "x" * 100_000}, headers=BEARER)  # 413
        client.get("/rag/playground/assets/missing.js", headers=BEARER)
        client.get("/no/such/route?key=" + KEY)
    records = _access_lines(caplog)
    lines = [r.getMessage() for r in records]
    expected = [
        ("GET", "/login", 303, None),
        ("POST", "/rag/invoke", 200, "admin"),
        ("POST", "/v1/chat/completions", 200, "admin"),
        ("POST", "/retrieve/invoke", 200, "admin"),
        ("POST", "/rag/invoke", 401, None),
        ("POST", "/rag/invoke", 413, None),
        ("GET", "/rag/playground/{file_path:path}", 404, "admin"),
        ("GET", "/no/such/route", 404, None),
    ]
    found = [(r.method, r.route, r.status, r.key_name) for r in records]  # type: ignore[attr-defined]
    assert found == expected, lines
    for line, (method, route, status, name) in zip(lines, expected, strict=True):
        who = f" key={name}" if name else ""  # the key's name, never the key
        assert re.fullmatch(rf"{method} {re.escape(route)} {status} \d+\.\dms{who}", line), line
    everything = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    for secret in (KEY, cookie, secret_question, QUESTION, "Bearer"):
        assert secret not in everything, secret


def test_access_log_questions_when_asked(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    s = _fill(make_settings(server={"log_questions": True}))
    with TestClient(create_app(s)) as client:
        client.post("/rag/invoke", json={"input": QUESTION})
        client.post("/v1/chat/completions", json=CHAT)
        client.post("/rag/batch", json={"inputs": ["first?", {"question": "second?"}]})
    lines = [r.getMessage() for r in _access_lines(caplog)]
    assert lines[0].endswith(f"question={json.dumps(QUESTION)}")
    assert lines[1].endswith(f"question={json.dumps(QUESTION)}")
    assert lines[2].endswith('question=["first?", "second?"]')


# -- 5. what clients see of documents ----------------------------------------------------

LEAKS = ['"origin"', '"source_hash"', '"chunk_count"', '"chunker"', '"chunk_set"']


def test_no_route_shows_ingest_bookkeeping(
    make_settings: Callable[..., Settings], faq_folder: Path, llm: FakeOpenAIServer
) -> None:
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.sync import ingest

    s = make_settings()
    ingest(faq_folder, s)
    # The bookkeeping is in Milvus (the retriever itself no longer returns it).
    store = MilvusRAGRetriever.from_settings(s).store()
    stored = store.client.query(
        store.collection_name, filter='source != ""', limit=1, output_fields=["*"]
    )[0]
    assert set(stored) >= INTERNAL_METADATA  # the store has them: the test can fail
    assert Path(stored["origin"]) == faq_folder.resolve()

    body = {"input": QUESTION}
    requests: list[tuple[str, Any]] = [
        (f"{base}/{kind}", body)
        for base in ("/rag", "/rag-with-sources", "/retrieve")
        for kind in ("invoke", "stream", "stream_log", "stream_events")
    ]
    requests += [
        ("/rag-with-sources/batch", {"inputs": [QUESTION]}),
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
    ]
    with TestClient(create_app(s)) as client:
        for path, payload in requests:
            response = client.post(path, json=payload)
            assert response.status_code == 200, (path, response.text)
            text = response.text.replace("\\", "")  # event data is JSON inside JSON
            for leak in [*LEAKS, str(faq_folder.resolve())]:
                assert leak not in text, (path, leak)
        # What is kept: the relative source, heading and score.
        context = client.post("/rag-with-sources/invoke", json=body).json()["output"]["context"]
        assert context[0]["metadata"]["source"].startswith("en/")
        assert {"heading", "score", "position"} <= set(context[0]["metadata"])
        events = client.post("/retrieve/stream_events", json=body).text
        assert '"source": "en/' in events or '"source":"en/' in events


# -- 6. retrieval-only mode --------------------------------------------------------------


def test_without_the_llm_key_only_retrieval_is_served(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, llm: FakeOpenAIServer
) -> None:
    _fill(make_settings())
    monkeypatch.delenv("TEST_LLM_KEY")
    app = create_app(make_settings())  # no longer refuses to start
    assert "TEST_LLM_KEY" in str(app.state.llm_missing)
    with TestClient(app) as client:
        output = client.post("/retrieve/invoke", json={"input": QUESTION}).json()["output"]
        assert output[0]["source"] == "en/faq/product_faq.md"
        assert client.get("/retrieve/playground/").status_code == 200
        off = [
            ("/rag/invoke", {"input": QUESTION}),
            ("/rag/stream", {"input": QUESTION}),
            ("/rag-with-sources/invoke", {"input": QUESTION}),
            ("/rag-with-sources/stream_log", {"input": QUESTION}),
            ("/v1/chat/completions", CHAT),
            ("/v1/chat/completions", {**CHAT, "stream": True}),
        ]
        for path, payload in off:
            response = client.post(path, json=payload)
            assert response.status_code == 503, path
            error = response.json()["error"]
            assert error["type"] == "MissingAPIKeyError"
            assert "TEST_LLM_KEY" in error["message"] and "llm.api_key_env" in error["message"]
        assert client.get("/rag/playground/").status_code == 503
        status, body = _ready(client)
        assert status == 200  # retrieval works
        assert (
            not body["checks"]["llm"]["ok"] and "TEST_LLM_KEY" in body["checks"]["llm"]["message"]
        )
        login = client.get("/login", follow_redirects=False)
        assert login.headers["location"] == "/retrieve/playground/"  # no key: nothing to ask
    assert llm.chat_requests() == []


def test_serve_without_the_llm_key_warns_once_and_starts(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    filled: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    monkeypatch.delenv("TEST_LLM_KEY")
    served: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: served.append(server))
    config = _serve_config(tmp_path, tiny_model_dir, llm, closed_port())
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert served
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "TEST_LLM_KEY" in warnings[0] and "503" in warnings[0]
