"""What an endpoint's failure becomes: one typed, one-line :class:`~milvus_rag.errors.LLMError`
that names the base URL and what to change (a password in a URL masked)."""

from __future__ import annotations

from typing import Any

from milvus_rag.errors import (
    ConfigError,
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
)
from milvus_rag.redaction import Redactor

__all__ = [
    "described_response",
    "endpoint_error",
    "header_error",
    "response_error",
    "root_cause",
    "shown_url",
]


_RETIRED_HINT = "Lepton's hosted *.lepton.run endpoints were retired; set llm.preset (nvidia, openai, local) or llm.base_url"


def endpoint_error(
    exc: BaseException,
    *,
    base_url: str,
    model: str,
    key_env: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> LLMError:
    """Translate an ``openai`` client exception into a typed, one-line :class:`LLMError`."""
    import openai

    where = f"LLM endpoint {base_url}"
    retired = "lepton.run" in base_url
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(
            f"{where} did not answer within {timeout:g} s; raise llm.timeout or check the endpoint"
            if timeout is not None
            else f"{where} did not answer in time; raise llm.timeout or check the endpoint"
        )
    if isinstance(exc, openai.APIConnectionError):
        hint = _RETIRED_HINT if retired else "check llm.base_url and that the server is running"
        return LLMConnectionError(f"{where} cannot be reached ({root_cause(exc)}); {hint}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        if status in (401, 403):
            key = f"the key in {key_env}" if key_env else "the API key"
            return LLMAuthError(
                f"{where} rejected {key} (HTTP {status}{detail}); set a valid key"
                + (f" in {key_env}" if key_env else " or set llm.api_key_env")
            )
        if status == 404:
            hint = f"; {_RETIRED_HINT}" if retired else ""
            return LLMNotFoundError(
                f"{where} answered 404 for model {model!r}{detail}: check llm.base_url and llm.model{hint}"
            )
        if status == 429:
            tries = f" after {retries} retries" if retries is not None else ""
            return LLMRateLimitError(
                f"{where} is rate limiting (HTTP 429{tries}){detail}; wait and retry, "
                "or raise llm.max_retries"
            )
        if status >= 500:
            return LLMServerError(
                f"{where} failed with HTTP {status}{detail}; try again later or use another endpoint"
            )
        return LLMError(f"{where} refused the request (HTTP {status}{detail})")
    return LLMError(f"{where} failed ({type(exc).__name__}: {root_cause(exc)})")


def header_error(exc: BaseException, key_env: str | None) -> ConfigError | None:
    """The one-line error for a key that cannot be sent in an HTTP header, or None.

    httpx refuses a header holding a line break (h11's ``Illegal header value b'Bearer
    ...'``, which quotes the key) or a non-ASCII character (``UnicodeEncodeError``).
    Settings never let such a key through; a key given in code may. The message names
    the variable, never the key.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the exception, then what caused it
        if seen is None:
            return None
        # httpx's, httpx2's, httpcore's and h11's LocalProtocolError alike
        protocol = any(cls.__name__ == "LocalProtocolError" for cls in type(seen).__mro__)
        refused = isinstance(seen, UnicodeEncodeError) or (
            protocol and "header" in str(seen).lower()
        )
        if refused:
            where = f"the key in {key_env}" if key_env else "the API key (or a request header)"
            return ConfigError(
                f"{where} cannot be sent in an HTTP header: it holds a line break, a control "
                "or a non-ASCII character; set it again as printable ASCII text"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def response_error(base_url: str, what: str) -> LLMResponseError:
    """The one-line error for an endpoint that answered with something that is not a chat completion.

    ``what`` says what came back instead, e.g. ``"an HTML page"``.
    """
    return LLMResponseError(
        f"LLM endpoint {base_url} answered, but not with an OpenAI-compatible chat completion "
        f"({what}); check llm.base_url: it must be the API root, usually ending in /v1"
    )


def described_response(body: Any, exc: BaseException) -> str:
    """What a non-completion response held, in a few words."""
    if isinstance(body, str):
        text = body.strip()
        if text.startswith("<"):
            return "got an HTML page"
        first = text.splitlines()[0][:80] if text else ""
        return f"got text: {first!r}" if first else "got an empty body"
    error = body.get("error") if isinstance(body, dict) else getattr(body, "error", None)
    if isinstance(error, dict):
        error = error.get("message")
    if error:
        return "it reports an error: " + str(error).strip().splitlines()[0][:160]
    if isinstance(exc, (KeyError, TypeError)) and "choices" in str(exc):
        return "got JSON without choices"
    return f"{type(exc).__name__}: {root_cause(exc)}"


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
    if not message:
        return ""
    return ": " + str(message).strip().splitlines()[0][:160]


def shown_url(url: str) -> str:
    """``url`` for messages: the password of its user info masked (``user:***@``)."""
    return Redactor().redact(url)


def root_cause(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return (text[0] if text else type(root).__name__)[:160]
