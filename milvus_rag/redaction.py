"""Masking secrets in text that leaves the process: error messages, output, JSON bodies, logs.

A :class:`Redactor` is built at an edge (the CLI command, ``create_app``) from the
settings it loaded and knows every secret in them: each ``SecretStr`` (the Milvus
token, each LLM endpoint's key, the server's API key) and the password of each URL
with user info (``milvus.uri=http://user:PW@host``, an ``llm.base_url``). It replaces
each secret with ``***`` in every form a message may show it in: as given and
stripped, Python-escaped (``repr``, ``printable``), in a ``bytes`` repr (an HTTP
library's ``Illegal header value b'Bearer ...'``), JSON-escaped, percent-encoded,
HTML-escaped and base64 (HTTP basic credentials, gRPC tokens). Whatever it knows, it
also masks URL credentials (``scheme://user:***@``) and bearer tokens (``Bearer ***``).

Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are masked only in those
two shapes: replacing every ``a`` of a message would make it unreadable.

The edges use it wherever an error becomes text: the CLI's error lines and output
(``printable``, ``--json``), the server's JSON error bodies, stream error events and
``/ready`` checks, and the package's and uvicorn's loggers (:func:`redact_logs`).
There is no process-wide redactor: each edge builds its own and passes it on.

Example:
    .. code-block:: python

        from milvus_rag.redaction import Redactor

        redactor = Redactor(["sk-live-1234"])
        assert redactor.redact("key sk-live-1234 rejected") == "key *** rejected"
        assert redactor.redact("http://root:pw@milvus:19530") == "http://root:***@milvus:19530"
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

__all__ = [
    "LOGGERS",
    "MASK",
    "MIN_SECRET_LENGTH",
    "RedactingFilter",
    "Redactor",
    "redact_logs",
]

#: What a secret is replaced with.
MASK = "***"
#: Shorter secrets are masked only as URL credentials and bearer tokens.
MIN_SECRET_LENGTH = 4
#: The loggers :func:`redact_logs` filters: every module logger of the package (a test
#: keeps this list complete), uvicorn's and the HTTP clients'. Loggers of ``milvus_rag``
#: modules already imported are filtered too.
LOGGERS: tuple[str, ...] = (
    "milvus_rag",
    "milvus_rag.keys",
    "milvus_rag.llm",
    "milvus_rag.mcp",
    "milvus_rag.migrate",
    "milvus_rag.server",
    "milvus_rag.server.access",
    "milvus_rag.settings",
    "milvus_rag.store.collection",
    "milvus_rag.store.loading",
    "milvus_rag.store.lock",
    "milvus_rag.sync.ray",
    "milvus_rag.tracing",
    "milvus_rag.loaders.formats",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    # the HTTP clients log each request's URL (with its user info) at INFO
    "httpx",
    "httpx2",
    "openai",
    "openai._base_client",
)

# scheme://user:PASSWORD@ (the password up to the @; no space, slash or quote in it)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:'\"]*:)[^\s/?#@'\"]+@")
# Bearer TOKEN (not a placeholder such as <key>, nor an already masked one)
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?![<*])[^\s'\"\\,;]+")


def _forms(secret: str) -> set[str]:
    """``secret`` as it may appear in a message, escaped or encoded."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(raw)[2:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
    }
    return {form for form in forms if form}


def _url_credentials(text: str) -> set[str]:
    """The password of ``text`` when it is a URL with one (``http://user:PW@host``), as
    written and decoded, and ``user:PW`` in base64 (HTTP basic auth's header)."""
    if "://" not in text or "@" not in text:
        return set()
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # not a URL after all (brackets)
        return set()
    if not parts.password:
        return set()
    user, password = parts.username or "", parts.password
    pairs = {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}
    basic = {base64.b64encode(pair.encode("utf-8", "surrogatepass")).decode() for pair in pairs}
    return {password, unquote(password), *basic}


def _secrets_in(objects: Iterable[object], limit: int = 10_000) -> list[str]:
    """Every secret in ``objects``: ``SecretStr`` values and URL passwords, found in
    pydantic models (their fields), lists, tuples and mappings, however nested.

    Breadth first, over at most ``limit`` objects: settings (a few hundred) are always
    searched whole; a retriever holding a million documents is not searched to the end.
    """
    found: list[str] = []
    seen: set[int] = set()
    queue = deque(objects)
    while queue and len(seen) < limit:
        obj = queue.popleft()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        fields = getattr(type(obj), "model_fields", None)  # a pydantic model's
        if hasattr(obj, "get_secret_value"):  # SecretStr, SecretBytes
            value = obj.get_secret_value()
            found.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        elif isinstance(obj, str):
            found.extend(_url_credentials(obj))
        elif isinstance(fields, dict):
            queue.extend(getattr(obj, name, None) for name in fields)
        elif isinstance(obj, Mapping):
            queue.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            queue.extend(obj)
    return found


class Redactor:
    """Replaces known secrets, URL credentials and bearer tokens in text with ``***``.

    Build it from the loaded settings (:meth:`from_settings`) at the edge that turns
    errors into text, and pass it to whatever writes that text.

    Example:
        .. code-block:: python

            from milvus_rag import load_settings
            from milvus_rag.redaction import Redactor

            redactor = Redactor.from_settings(load_settings())
            print(redactor.redact("Milvus at http://root:secret@host:19530 cannot be reached"))
            # Milvus at http://root:***@host:19530 cannot be reached
    """

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            for value in {secret, secret.strip()}:
                if len(value) >= MIN_SECRET_LENGTH:
                    forms |= _forms(value)
        # Longest first: a form that contains another is replaced whole.
        self._forms = tuple(sorted(forms, key=lambda form: (-len(form), form)))

    @classmethod
    def from_settings(cls, settings: object, *also: object) -> Redactor:
        """A redactor for every secret of ``settings`` (and of ``also``: e.g. a chat
        model given to the server, whose key the settings do not hold).

        Secrets are found by type, not by name: every ``SecretStr`` field, and the
        password of every URL with user info, in any section.
        """
        return cls(_secrets_in([settings, *also]))

    def redact(self, text: object, *, credentials: bool = True) -> str:
        """``str(text)`` with every known secret masked, and (``credentials``) every URL
        password and bearer token, known or not.

        Pass ``credentials=False`` for content (answers, documents, event streams): a
        document may well show ``http://user:pass@host`` as an example.
        """
        value = str(text)
        for form in self._forms:
            if form in value:
                value = value.replace(form, MASK)
        if not credentials:
            return value
        value = _URL_CREDENTIALS.sub(rf"\g<1>{MASK}@", value)
        return _BEARER.sub(rf"\g<1>{MASK}", value)

    def redact_data(self, data: Any, *, credentials: bool = True) -> Any:
        """``data`` (JSON-like: mappings, lists, strings) with every string redacted."""
        if isinstance(data, str):
            return self.redact(data, credentials=credentials)
        if isinstance(data, Mapping):
            return {
                self.redact_data(key, credentials=credentials): self.redact_data(
                    value, credentials=credentials
                )
                for key, value in data.items()
            }
        if isinstance(data, (list, tuple)):
            return [self.redact_data(item, credentials=credentials) for item in data]
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redactor) and other._forms == self._forms

    def __hash__(self) -> int:
        return hash(self._forms)

    def __repr__(self) -> str:  # never the secrets
        return f"Redactor({len(self._forms)} secret forms)"


class RedactingFilter(logging.Filter):
    """A logging filter masking secrets in records (message, arguments, traceback).

    It never drops a record. Equal when their redactors are equal, so a logger holds
    one filter per set of secrets (``Logger.addFilter`` skips an equal one).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self.users = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RedactingFilter) and other.redactor == self.redactor

    def __hash__(self) -> int:
        return hash(self.redactor)

    def _arg(self, value: Any) -> Any:
        if isinstance(value, (int, float)) or value is None:
            return value  # keeps %d and %.1f working
        text = str(value)
        redacted = self.redactor.redact(text)
        return value if redacted == text else redacted

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        if redact(message) != message:
            # Arguments stay arguments where possible (uvicorn's access formatter reads them).
            if isinstance(record.args, tuple):
                record.args = tuple(self._arg(arg) for arg in record.args)
            elif isinstance(record.args, Mapping):
                record.args = {key: self._arg(arg) for key, arg in record.args.items()}
            record.msg = redact(record.msg)
            try:
                again = record.getMessage()
            except Exception:
                again = message
            if redact(again) != again:  # a secret across the format and its arguments
                record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_logs(redactor: Redactor, names: Iterable[str] = LOGGERS) -> Callable[[], None]:
    """Filter the loggers ``names`` (and every ``milvus_rag.*`` logger already made) through
    ``redactor``; returns a function removing what this call added.

    A filter on a logger sees the records made on that logger, so each module's logger
    gets one. Calls with equal redactors share one filter per logger (counted): the
    last removal takes it off.
    """
    made = [
        name for name in list(logging.root.manager.loggerDict) if name.startswith("milvus_rag.")
    ]
    installed: list[tuple[logging.Logger, RedactingFilter]] = []
    for name in sorted({*names, *made}):
        logger = logging.getLogger(name)
        wanted = RedactingFilter(redactor)
        present = next((f for f in logger.filters if f == wanted), None)
        if not isinstance(present, RedactingFilter):
            logger.addFilter(wanted)
            present = wanted
        present.users += 1
        installed.append((logger, present))

    def remove() -> None:
        while installed:
            logger, added = installed.pop()
            added.users -= 1
            if added.users <= 0:
                logger.removeFilter(added)

    return remove
