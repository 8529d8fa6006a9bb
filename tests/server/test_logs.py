"""`milvus_rag.server.logs`: the access log (no secrets, questions only when asked)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from milvus_rag.server import COOKIE_NAME, create_app
from milvus_rag.settings import Settings
from tests.support.server import (
    CHAT,
    QUESTION,
    _fill,
)
from tests.support.server_ops import BEARER, KEY

pytestmark = pytest.mark.slow


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
