"""The LangServe playground in a real browser: sign in with the key, ask, see the answer stream;
then Swagger UI, rendered from the server's own scripts.

Headless Chromium (Debian's ``chromium`` package) driven over the DevTools protocol
against ``create_app`` served by uvicorn on loopback, over Milvus Lite, the tiny model
and the local OpenAI-compatible server. Skipped where no Chromium is installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("langserve")
pytest.importorskip("websockets.sync.client")

from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.support.browser import Chromium, Page, find_chromium
from tests.support.openai_server import FakeOpenAIServer
from tests.support.server import (
    QUESTION,
    _fill,
    _uvicorn,
)

pytestmark = pytest.mark.slow

KEY = "browser-test-key"
QUESTION_BOX = "document.getElementById('#/properties/question-input')"
STREAM_LOG = "e => e.name.endsWith('/rag/stream_log')"
START = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Start')"


@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    return binary


def _wait(page: Page, expression: str, shot: Path) -> None:
    """Wait for ``expression``; on failure, save a screenshot and report the console."""
    try:
        page.wait_for(expression)
    except TimeoutError:
        page.screenshot(shot)
        raise AssertionError(f"{expression}: never true; console: {page.console}") from None


def test_playground_streams_an_answer_after_login(
    chromium: str,
    make_settings: Callable[..., Settings],
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", KEY)
    app = create_app(_fill(make_settings()))
    shot = tmp_path / "playground.png"
    with _uvicorn(app) as base, Chromium(chromium, tmp_path / "profile") as browser:
        page = browser.page()
        page.navigate(f"{base}/rag/playground/")
        assert page.evaluate("location.pathname + location.search") == (
            "/login?next=/rag/playground/"
        )
        page.evaluate("document.querySelector('input[name=key]').focus()")
        page.call("Input.insertText", text=KEY)
        page.evaluate("document.querySelector('button[type=submit]').click()")
        _wait(page, f"location.pathname === '/rag/playground/' && !!{QUESTION_BOX}", shot)
        assert page.evaluate("document.cookie") == ""  # HttpOnly: out of the page's reach

        page.evaluate(f"{QUESTION_BOX}.focus()")
        page.call("Input.insertText", text=QUESTION)
        _wait(page, f"!{START}.disabled", shot)
        page.evaluate(f"{START}.click()")
        _wait(page, f"document.body.innerText.includes({json.dumps(llm.answer)})", shot)
        # A streamed response's timing entry is recorded only when the stream ends.
        _wait(page, f"performance.getEntriesByType('resource').some({STREAM_LOG})", shot)
        streams = page.evaluate(
            f"performance.getEntriesByType('resource').filter({STREAM_LOG})"
            ".map(e => e.responseStatus)"
        )
        # Swagger UI renders the API from local scripts, with the same cookie.
        page.navigate(f"{base}/docs")
        _wait(page, "!!document.querySelector('.swagger-ui .opblock')", shot)
        loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert streams == [200]
    assert loaded and all(url.startswith(base) for url in loaded), loaded
    (request,) = llm.chat_requests()
    assert request["body"]["stream"] is True  # streamed from the LLM to the page
    assert QUESTION in request["body"]["messages"][1]["content"]
