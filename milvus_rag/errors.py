"""The error tree every layer of milvus-rag raises.

Library code raises these (``raise ... from exc``) with a one-line, actionable
message; only the edges (the CLI and the server) turn them into output, exit
codes or HTTP statuses.

::

    MilvusRAGError
    ├── ConfigError               bad configuration value, unknown key, missing file
    ├── SourceError               a source that cannot be read safely
    │   ├── NoFilesMatchedError
    │   ├── UnsafeSourceError     archive or URL refused by a guard
    │   └── DownloadError
    ├── EmbeddingError
    │   └── ModelNotAvailableError
    ├── EngineError               the Ray engine failed: a task kept failing, the cluster went away
    ├── StoreError
    │   ├── StoreLockedError      Milvus Lite file opened by another process
    │   ├── StoreUnavailableError Milvus server unreachable
    │   ├── EmbeddingMismatchError
    │   ├── SchemaMismatchError   mode needs fields the collection lacks
    │   ├── EmptyCollectionError
    │   └── IngestLockedError     another ingest is writing the collection
    └── LLMError
        ├── MissingAPIKeyError
        ├── LLMAuthError          401 / 403
        ├── LLMNotFoundError      404: wrong base URL or model
        ├── LLMRateLimitError     429 after the configured retries
        ├── LLMServerError        5xx
        ├── LLMTimeoutError
        ├── LLMConnectionError    endpoint unreachable
        └── LLMResponseError      answered, but not with an OpenAI-compatible chat completion
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "HTTP_STATUSES",
    "ConfigError",
    "DownloadError",
    "EmbeddingError",
    "EmbeddingMismatchError",
    "EmptyCollectionError",
    "EngineError",
    "IngestLockedError",
    "LLMAuthError",
    "LLMConnectionError",
    "LLMError",
    "LLMNotFoundError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMServerError",
    "LLMTimeoutError",
    "MilvusRAGError",
    "MissingAPIKeyError",
    "ModelNotAvailableError",
    "NoFilesMatchedError",
    "SchemaMismatchError",
    "SourceError",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailableError",
    "UnsafeSourceError",
]


#: Every exit code of the ``milvus-rag`` command line, with its meaning. Nothing a user
#: types (arguments, options, ``MILVUS_RAG_*`` variables, files) gives any other code.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "a typed error (MilvusRAGError.exit_code): source, store, embedding or LLM failure",
    2: "bad usage or configuration: an unknown option or bad flag value, or a ConfigError",
    130: "interrupted (Ctrl-C)",
}

#: Every HTTP status the server (``milvus_rag.server``) answers with, with its meaning;
#: errors have a JSON body. No request, however malformed, gets another status. 500 is
#: left out on purpose: it means the server itself failed (a typed error with no status
#: of its own, such as an embedding failure, or a bug), never that the request was bad.
HTTP_STATUSES: dict[int, str] = {
    200: "success (JSON, or a server-sent event stream)",
    303: "a browser sent to the /login form, or back from it with the login cookie",
    400: "the body cannot be parsed: not UTF-8 text, or JSON nested too deeply",
    401: "missing or wrong API key (server.api_key)",
    404: "no such route",
    405: "method not allowed on this route",
    409: "the collection lacks what the request needs: mode hybrid on a dense collection",
    413: "body above server.max_body_bytes, or a batch above server.max_batch",
    422: (
        "invalid request: not JSON, wrong shape or types, an empty, huge or non-Unicode "
        "question or history, a per-request setting out of range"
    ),
    429: "the LLM endpoint kept rate-limiting (LLMRateLimitError)",
    502: "the LLM endpoint failed: auth, not found, server error, unreachable (LLMError)",
    503: (
        "the collection is empty or missing, or Milvus is unavailable or locked; an answer "
        "route without the LLM's key (retrieval-only mode); /ready when not ready"
    ),
    504: "the LLM endpoint timed out (LLMTimeoutError)",
}


class MilvusRAGError(Exception):
    """Base class: every error milvus-rag raises on purpose.

    ``str(error)`` is a complete one-line message meant for the user.
    ``exit_code`` is what the CLI exits with.
    """

    exit_code: int = 1


class ConfigError(MilvusRAGError):
    """A configuration value is invalid, unknown or points at a missing file."""

    exit_code = 2


class SourceError(MilvusRAGError):
    """A document source (folder, file, archive, URL) cannot be read."""


class NoFilesMatchedError(SourceError):
    """The source holds no file matching the requested pattern."""


class UnsafeSourceError(SourceError):
    """An archive or URL was refused by a safety guard."""


class DownloadError(SourceError):
    """A URL could not be downloaded (HTTP error, timeout, wrong content)."""


class EmbeddingError(MilvusRAGError):
    """The embedding model failed."""


class ModelNotAvailableError(EmbeddingError):
    """The embedding model cannot be loaded (offline, missing folder)."""


class EngineError(MilvusRAGError):
    """The distributed ingest engine (Ray) failed: a task that kept failing, a lost cluster.

    What was written before the failure stays and is consistent; a rerun resumes.
    """


class StoreError(MilvusRAGError):
    """Milvus refused or failed an operation."""


class StoreLockedError(StoreError):
    """A Milvus Lite database file is already open in another process."""


class StoreUnavailableError(StoreError):
    """The Milvus server cannot be reached."""


class EmbeddingMismatchError(StoreError):
    """The collection was built by another embedding model, dimension or metric."""


class SchemaMismatchError(StoreError):
    """The collection lacks fields the requested mode needs."""


class EmptyCollectionError(StoreError):
    """The collection does not exist or holds no documents."""


class IngestLockedError(StoreError):
    """Another ingest is writing the same collection."""


class LLMError(MilvusRAGError):
    """The chat model endpoint failed."""


class MissingAPIKeyError(LLMError):
    """The environment variable holding the API key is not set."""


class LLMAuthError(LLMError):
    """The endpoint rejected the API key (401 / 403)."""


class LLMNotFoundError(LLMError):
    """The endpoint answered 404: wrong base URL or model name."""


class LLMRateLimitError(LLMError):
    """The endpoint kept answering 429 after the configured retries."""


class LLMServerError(LLMError):
    """The endpoint answered with a server error (5xx)."""


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within ``llm.timeout`` seconds."""


class LLMConnectionError(LLMError):
    """The endpoint could not be reached at all."""


class LLMResponseError(LLMError):
    """The endpoint answered (HTTP 200) with something that is not a chat completion.

    Typically an HTML page from a proxy, a login portal or a base URL that is not an
    OpenAI-compatible API root.
    """
