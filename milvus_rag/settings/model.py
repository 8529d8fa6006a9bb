"""``Settings``: the sections together, where their values come from, and their display
(secrets shown only as set or unset)."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PrivateAttr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from milvus_rag.settings.endpoints import LLMEndpoint, LLMSettings
from milvus_rag.settings.secrets import ENV_PREFIX, url_origin
from milvus_rag.settings.sections import (
    AnswerSettings,
    EmbeddingSettings,
    IngestSettings,
    MilvusSettings,
    RetrievalSettings,
    ServerSettings,
    TelemetrySettings,
)

__all__ = ["CONFIG_DATA", "Settings", "secret_keys"]

#: What ``load_settings`` read from the config file it chose (none by default).
CONFIG_DATA: ContextVar[dict[str, Any] | None] = ContextVar("milvus_rag_config", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    """The config file's values, read by ``load_settings`` (none by default)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = CONFIG_DATA.get() or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _is_secret_field(info: Any) -> bool:
    return "SecretStr" in str(info.annotation)


def secret_keys() -> list[tuple[str, str]]:
    """``(section, key)`` of every secret setting (a ``SecretStr`` field)."""
    return [
        (section, key)
        for section, info in Settings.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
        for key, field in info.annotation.model_fields.items()
        if _is_secret_field(field)
    ]


class Settings(BaseSettings):
    """All of milvus-rag's configuration.

    Build it with :func:`load_settings` at the edge (CLI, server) and pass it
    down. ``Settings()`` alone gives the built-in defaults plus ``MILVUS_RAG_``
    environment variables, without the LLM key.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    milvus: MilvusSettings = MilvusSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    ingest: IngestSettings = IngestSettings()
    server: ServerSettings = ServerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    _config_file: Path | None = PrivateAttr(None)

    @property
    def config_file(self) -> Path | None:
        """The config file :func:`load_settings` read (absolute), or None."""
        return self._config_file

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def redacted(self) -> dict[str, Any]:
        """A JSON-ready dump for display: secrets shown only as set / unset, URL
        passwords (``milvus.uri=http://user:PW@host``) masked."""
        from milvus_rag.redaction import Redactor

        data = self.model_dump(mode="json")
        for section, key in secret_keys():
            data[section][key] = "**********" if getattr(getattr(self, section), key) else None
        for shown, fallback in zip(data["llm"]["fallbacks"], self.llm.fallbacks, strict=True):
            shown["api_key"] = "**********" if fallback.api_key else None
        redacted: dict[str, Any] = Redactor.from_settings(self).redact_data(data)
        return redacted

    def secret_routes(self) -> list[dict[str, Any]]:
        """Which secret goes where, for display (``milvus-rag config``), never a value.

        One entry per secret: ``secret`` (the setting), ``variable`` (the environment
        variable it is read from; None: no key is sent), ``set``, and ``sent_to``
        (``scheme://host:port`` it is sent to; None for the server's own key, which
        clients send to it, and for a Milvus Lite file).
        """
        endpoints: list[tuple[str, LLMSettings | LLMEndpoint]] = [("llm", self.llm)]
        endpoints += [(f"llm.fallbacks[{i}]", f) for i, f in enumerate(self.llm.fallbacks)]
        routes = [
            {
                "secret": f"{name}.api_key",
                "variable": endpoint.api_key_env,
                "set": endpoint.api_key is not None,
                "sent_to": url_origin(str(endpoint.base_url)) if endpoint.api_key_env else None,
            }
            for name, endpoint in endpoints
        ]
        milvus = self.milvus
        routes.append(
            {
                "secret": "milvus.token",
                "variable": f"{ENV_PREFIX}MILVUS__TOKEN",
                "set": milvus.token is not None,
                "sent_to": None if milvus.is_lite else url_origin(milvus.uri),
            }
        )
        routes.append(
            {
                "secret": "server.api_key",
                "variable": f"{ENV_PREFIX}SERVER__API_KEY",
                "set": self.server.api_key is not None,
                "sent_to": None,
            }
        )
        return routes
