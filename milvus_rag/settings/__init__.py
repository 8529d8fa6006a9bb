"""Typed settings: one ``Settings`` object with a section per concern.

Sources, highest priority first:

1. explicit overrides (CLI flags, ``load_settings(overrides=...)``),
2. environment variables ``MILVUS_RAG_<SECTION>__<KEY>`` (``MILVUS_RAG_MILVUS__URI``),
3. ``config.yaml`` (``--config PATH``; ``./config.yaml`` when present),
4. the built-in defaults, which are the tutorial's values.

Secrets (``milvus.token``, the LLM API key, the server's API key) are ``SecretStr``
and come from the environment only: the LLM key from the variable named by
``llm.api_key_env`` (which may not be a ``MILVUS_RAG_`` variable), the Milvus token
from ``MILVUS_RAG_MILVUS__TOKEN``, the server key from ``MILVUS_RAG_SERVER__API_KEY``.
Each is stripped of surrounding whitespace (a trailing CR or LF from a file), and one
holding a control or non-ASCII character inside is a :class:`ConfigError` naming its
variable, never its value: it could not be sent in a header anyway. A config file
found implicitly (``./config.yaml``, not ``--config``) may not choose which key goes to
which host: a key-to-host pairing only the file brings (through a base URL, key variable,
preset or fallbacks) must be a preset's key sent to that preset's host (:func:`load_settings`).
A ``MILVUS_RAG_`` variable that names no setting is reported with the closest valid
name (:func:`unknown_env_vars`). Every float setting must be finite.

This is the only package that reads ``os.environ``; everything else receives a
``Settings`` (or one of its sections) from the edge that loaded it.

The package: :mod:`~milvus_rag.settings.sections` (the sections but ``llm``),
:mod:`~milvus_rag.settings.endpoints` (the ``llm`` section and its presets),
:mod:`~milvus_rag.settings.secrets` (how secrets are read, where keys go),
:mod:`~milvus_rag.settings.model` (``Settings``), :mod:`~milvus_rag.settings.files` (the
config file) and :mod:`~milvus_rag.settings.loader` (:func:`load_settings`).

Example:
    .. code-block:: python

        from milvus_rag import load_settings

        settings = load_settings(overrides={"retrieval": {"top_k": 5}})
        assert settings.retrieval.top_k == 5
"""

from __future__ import annotations

from milvus_rag.settings.endpoints import LLM_PRESETS, LLMEndpoint, LLMPreset, LLMSettings
from milvus_rag.settings.files import DEFAULT_CONFIG_FILE, default_config_text
from milvus_rag.settings.loader import load_settings, unknown_env_vars
from milvus_rag.settings.model import Settings
from milvus_rag.settings.secrets import ENV_PREFIX
from milvus_rag.settings.sections import (
    AnswerSettings,
    EmbeddingSettings,
    IngestSettings,
    MilvusSettings,
    RetrievalSettings,
    ServerSettings,
    TelemetrySettings,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "LLM_PRESETS",
    "AnswerSettings",
    "EmbeddingSettings",
    "IngestSettings",
    "LLMEndpoint",
    "LLMPreset",
    "LLMSettings",
    "MilvusSettings",
    "RetrievalSettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "default_config_text",
    "load_settings",
    "unknown_env_vars",
]
