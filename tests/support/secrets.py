"""What the secrets tests share: secrets set in the environment, outputs checked clean of them."""

from __future__ import annotations

import base64

import pytest
from typer.testing import CliRunner

runner = CliRunner()


PRIMARY = "MARK-primary-8c1e"


FALLBACK = "MARK-fallback-42d0"


TOKEN = "MARK-token-9b7a"


SERVER = "MARK-server-5f3c"


URI_PW = "MARK-uripw-1d2e"


URL_PW = "MARK-urlpw-77aa"


MARKERS = (PRIMARY, FALLBACK, TOKEN, SERVER, URI_PW, URL_PW)


#: Each secret's variable (the LLM keys' names are the test's api_key_env).
VARIABLES = {
    "TEST_LLM_KEY": PRIMARY,
    "FALLBACK_KEY": FALLBACK,
    "MILVUS_RAG_MILVUS__TOKEN": TOKEN,
    "MILVUS_RAG_SERVER__API_KEY": SERVER,
}


def _leaks(text: str) -> list[str]:
    """The markers in ``text``, as they are or base64 encoded (HTTP basic auth, tokens)."""
    found = [marker for marker in MARKERS if marker in text]
    encoded = {base64.b64encode(f"u:{URL_PW}".encode()).decode(): "basic auth of llm.base_url"}
    encoded[base64.b64encode(b"MARK-").decode()[:6]] = "a base64 marker"
    return found + [what for form, what in encoded.items() if form in text]


def _assert_clean(text: str, where: str) -> None:
    assert "MARK" not in text and not _leaks(text), f"{where} shows {_leaks(text)}: {text}"
    assert "Traceback" not in text, f"{where}: {text}"


def _set_secrets(monkeypatch: pytest.MonkeyPatch, form: str = "{}\r\n") -> None:
    for name, value in VARIABLES.items():
        monkeypatch.setenv(name, form.format(value))


# -- which key goes to which host ----------------------------------------------------------

EVIL = "http://collector.example:8080/v1"
