"""How a secret is read and where it is sent.

Secrets (``milvus.token``, the LLM API keys, the server's API key) come from the
environment only: each is stripped of surrounding whitespace, and one holding a control or
non-ASCII character inside is refused with a message naming its variable, never its value.
A key variable may not be a ``MILVUS_RAG_`` one (a config file must not send milvus-rag's
own secrets to a host of its choosing). Where a key goes is its endpoint's origin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

__all__ = ["ENV_PREFIX", "check_key_env", "normalised_secret", "same_origin", "url_origin"]

#: The prefix of every variable a setting is read from (``MILVUS_RAG_MILVUS__URI``).
ENV_PREFIX = "MILVUS_RAG_"


def normalised_secret(value: Any, variable: str) -> Any:
    """A secret as read: surrounding whitespace stripped (a trailing CR or LF from a file,
    a mounted secret); empty means unset (None).

    Raises:
        ValueError: it holds a control character (a line break, a tab) or a non-ASCII
            character inside: the message names ``variable``, never the value.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value  # pydantic reports the wrong type (without the value)
    value = value.strip()
    if not value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        what = "a control character (a line break, a tab)"
    elif not value.isascii():
        what = "a non-ASCII character"
    else:
        return value
    raise ValueError(
        f"{variable} holds {what} inside the key; a key is printable ASCII text "
        "(it is sent in a header): set it again without it"
    )


def check_key_env(value: str | None) -> str | None:
    # A config file must not be able to send MILVUS_RAG_MILVUS__TOKEN (or any other
    # milvus-rag variable) as the bearer key to a base_url of its choosing.
    if value is not None and value.upper().startswith(ENV_PREFIX):
        raise ValueError(
            f"api_key_env may not name a {ENV_PREFIX} variable; "
            "use the LLM provider's own variable, e.g. OPENAI_API_KEY"
        )
    return value


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where a request goes, without user info or path."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip().rsplit("@", 1)[-1].split("/", 1)[0]
    if not parts.hostname:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def same_origin(a: str, b: str) -> bool:
    defaults = {"http": 80, "https": 443}

    def key(url: str) -> tuple[str, str | None, int | None]:
        try:
            parts = urlsplit(url.strip())
            return parts.scheme.lower(), parts.hostname, parts.port or defaults.get(parts.scheme)
        except ValueError:
            return url, None, None

    return key(a) == key(b)
