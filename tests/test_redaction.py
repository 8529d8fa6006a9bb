"""The redaction facility: every form of a secret masked, in text, data and log records."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr

from milvus_rag.redaction import (
    LOGGERS,
    MASK,
    RedactingFilter,
    Redactor,
    redact_logs,
)
from milvus_rag.settings import load_settings

REPO = Path(__file__).resolve().parents[1]

SECRET = "MARK-k3y'\"é<&>/+= x"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


FORMS: dict[str, Callable[[str], str]] = {
    "raw": str,
    "repr": lambda s: repr(s)[1:-1],
    "ascii": lambda s: ascii(s)[1:-1],
    "printable": _printable,
    "json": lambda s: json.dumps(s)[1:-1],
    "json-unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "bytes-repr": lambda s: repr(s.encode())[2:-1],
    "percent": lambda s: quote(s, safe=""),
    "percent-path": quote,
    "form": quote_plus,
    "html": html.escape,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("suffix", ["", "\r", "\r\n", "  "])
def test_every_form_of_a_secret_is_masked(form: str, suffix: str) -> None:
    """As given (a trailing CR/LF or spaces from a file) or stripped, in each encoding."""
    redactor = Redactor([SECRET + suffix])
    for value in {SECRET, SECRET + suffix}:
        shown = FORMS[form](value)
        text = redactor.redact(f"Illegal header value b'Bearer {shown}' (then {shown})")
        assert shown not in text and "MARK" not in text, text
        assert MASK in text


def test_the_bug_report_message_is_masked() -> None:
    redactor = Redactor(["sk-x\r"])
    text = redactor.redact(
        "LLM endpoint cannot be reached (Illegal header value b'Bearer sk-x\\r')"
    )
    assert "sk-x" not in text


def test_url_credentials_and_bearer_tokens_are_masked_without_knowing_them() -> None:
    redactor = Redactor()
    assert (
        redactor.redact("Milvus at http://root:hunter2@db:19530 cannot be reached")
        == "Milvus at http://root:***@db:19530 cannot be reached"
    )
    assert redactor.redact("got 'https://u:p%40ss@h/x'") == "got 'https://u:***@h/x'"
    assert redactor.redact("Authorization: Bearer abc.DEF-123") == "Authorization: Bearer ***"
    # a placeholder is not a token; a URL without a password keeps its user
    assert redactor.redact("send Authorization: Bearer <key>") == "send Authorization: Bearer <key>"
    assert redactor.redact("ray://head@10.0.0.1:10001") == "ray://head@10.0.0.1:10001"


def test_short_secrets_are_masked_only_as_credentials() -> None:
    redactor = Redactor(["ab"])
    assert redactor.redact("a table about abc") == "a table about abc"
    assert redactor.redact("http://u:ab@h") == "http://u:***@h"


def test_settings_secrets_are_found_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SecretStr (token, server key, each endpoint's key) and each URL password."""
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "MARK-token")
    monkeypatch.setenv("MILVUS_RAG_SERVER__API_KEY", "MARK-server")
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", "http://root:MARK%2Furi@db:19530")
    monkeypatch.setenv("PRIMARY_KEY", "MARK-primary")
    monkeypatch.setenv("FALLBACK_KEY", "MARK-fallback")
    settings = load_settings(
        overrides={
            "llm": {
                "base_url": "http://u:MARK-url@llm:8080/v1",
                "model": "m",
                "api_key_env": "PRIMARY_KEY",
                "fallbacks": [
                    {"base_url": "http://fb:8080/v1", "model": "m", "api_key_env": "FALLBACK_KEY"}
                ],
            }
        }
    )
    redactor = Redactor.from_settings(settings)
    text = " ".join(
        [
            "MARK-token MARK-server MARK-primary MARK-fallback",
            "MARK%2Furi MARK/uri MARK-url",
            base64.b64encode(b"u:MARK-url").decode(),  # HTTP basic auth from the URL
            base64.b64encode(b"root:MARK/uri").decode(),
        ]
    )
    shown = redactor.redact(text)
    assert "MARK" not in shown and base64.b64encode(b"u:MARK").decode()[:8] not in shown
    assert set(shown.split()) == {MASK}


def test_secrets_of_other_models_are_found_too() -> None:
    """A chat model given to the server holds its own key (a SecretStr field)."""
    from milvus_rag.llm import EndpointChatOpenAI, FallbackChatModel

    model = FallbackChatModel(
        models=[
            EndpointChatOpenAI(base_url="http://a/v1", api_key="MARK-one", model="m"),
            EndpointChatOpenAI(base_url="http://b/v1", api_key=SecretStr("MARK-two"), model="m"),
        ]
    )
    redactor = Redactor.from_settings(load_settings(), model)
    assert redactor.redact("MARK-one MARK-two") == f"{MASK} {MASK}"


def test_redact_data_masks_every_string() -> None:
    redactor = Redactor(["MARK-secret"])
    data = {"a": ["x MARK-secret", {"MARK-secret": 1}], "b": 2, "c": None}
    assert redactor.redact_data(data) == {"a": [f"x {MASK}", {MASK: 1}], "b": 2, "c": None}


def test_equal_redactors_are_equal_and_never_show_secrets() -> None:
    assert Redactor(["MARK-1", "MARK-2"]) == Redactor(["MARK-2", "MARK-1"])
    assert Redactor(["MARK-1"]) != Redactor(["MARK-2"])
    assert "MARK" not in repr(Redactor(["MARK-1"]))


class _Boom(Exception):
    pass


def _record(
    msg: object, args: object = None, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("milvus_rag.x", logging.WARNING, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    redactor = Redactor(["MARK-key"])
    log_filter = RedactingFilter(redactor)
    formatter = logging.Formatter("%(message)s")

    record = _record("%s; answered by %s after %d tries", (_Boom("key MARK-key"), "x", 3))
    assert log_filter.filter(record)
    assert formatter.format(record) == f"key {MASK}; answered by x after 3 tries"

    try:
        raise _Boom("Illegal header value b'Bearer MARK-key\\r'")
    except _Boom as exc:
        record = _record("stream failed", exc=exc)
    assert log_filter.filter(record)
    text = formatter.format(record)
    assert "Traceback" in text and "_Boom" in text and "MARK" not in text

    # uvicorn's access formatter reads the arguments: they stay a tuple
    record = _record(
        '%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", "/login?key=MARK-key", "1.1", 303)
    )
    assert log_filter.filter(record)
    assert isinstance(record.args, tuple) and record.args[4] == 303
    assert record.getMessage() == f'1.2.3.4:5 - "GET /login?key={MASK} HTTP/1.1" 303'


def test_redact_logs_filters_the_package_and_uvicorn_loggers() -> None:
    redactor = Redactor(["MARK-log-secret"])
    remove = redact_logs(redactor)
    again = redact_logs(Redactor(["MARK-log-secret"]))  # an equal one: shared
    try:
        for name in (
            "milvus_rag.llm",
            "milvus_rag.server.access",
            "uvicorn.error",
            "uvicorn.access",
        ):
            filters = [f for f in logging.getLogger(name).filters if f == RedactingFilter(redactor)]
            assert len(filters) == 1, name
        remove()
        assert RedactingFilter(redactor) in logging.getLogger("uvicorn.error").filters
    finally:
        remove()
        again()
    assert RedactingFilter(redactor) not in logging.getLogger("uvicorn.error").filters


def test_every_package_logger_is_filtered() -> None:
    """Each module logging on ``getLogger(__name__)`` is in LOGGERS (a filter on a logger
    only sees the records made on it)."""
    roots = {"milvus_rag": REPO / "milvus_rag", "milvus_rag.chains": REPO / "chains"}
    roots["milvus_rag.loaders"] = REPO / "loaders"
    found = set()
    for package, folder in roots.items():
        for path in folder.rglob("*.py"):
            text = path.read_text()
            module = ".".join([package, *path.relative_to(folder).with_suffix("").parts])
            module = module.removesuffix(".__init__")
            if re.search(r"getLogger\(__name__\)", text):
                found.add(module)
            for suffix in re.findall(r'getLogger\(f"\{__name__\}\.(\w+)"\)', text):
                found.add(f"{module}.{suffix}")
    assert found and found <= set(LOGGERS), found - set(LOGGERS)
