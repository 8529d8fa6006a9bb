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

This is the only module that reads ``os.environ``; everything else receives a
``Settings`` (or one of its sections) from the edge that loaded it.

Example:
    .. code-block:: python

        from milvus_rag import load_settings

        settings = load_settings(overrides={"retrieval": {"top_k": 5}})
        assert settings.retrieval.top_k == 5
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from milvus_rag.choices import (
    Fusion,
    IngestEngine,
    LLMPresetName,
    Metric,
    RetrievalMode,
    SearchType,
    SplitterName,
)
from milvus_rag.errors import ConfigError

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

ENV_PREFIX = "MILVUS_RAG_"
DEFAULT_CONFIG_FILE = Path("config.yaml")

_log = logging.getLogger(__name__)


class LLMPreset(BaseModel):
    """The endpoint, model and key variable a preset fills in."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    model: str
    api_key_env: str | None


LLM_PRESETS: dict[str, LLMPreset] = {
    # The tutorial's endpoint. Lepton's hosted *.lepton.run endpoints were retired
    # in 2025; the preset stays for parity and for self-hosted Lepton deployments.
    "lepton": LLMPreset(
        base_url="https://mistral-7b.lepton.run/api/v1/",
        model="mistral-7b",
        api_key_env="LEPTONAI_TOKEN",
    ),
    "nvidia": LLMPreset(
        base_url="https://integrate.api.nvidia.com/v1",
        model="meta/llama-3.3-70b-instruct",
        api_key_env="NVIDIA_API_KEY",
    ),
    "openai": LLMPreset(
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
    ),
    # An OpenAI-compatible server on this machine (Ollama, vLLM, llama.cpp): no key.
    "local": LLMPreset(
        base_url="http://localhost:11434/v1",
        model="llama3.2",
        api_key_env=None,
    ),
}


def _normalised_secret(value: Any, variable: str) -> Any:
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class MilvusSettings(_Section):
    """Where the vectors live and how the collection is built."""

    uri: str = "./milvus_demo.db"
    token: SecretStr | None = None
    collection: str = Field("my_rag_collection", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    metric: Metric = "IP"
    consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = "Strong"
    index_type: Literal["AUTOINDEX", "FLAT", "IVF_FLAT", "HNSW"] = "FLAT"
    timeout: float = Field(30.0, gt=0)

    @field_validator("token", mode="before")
    @classmethod
    def _token_is_clean(cls, value: Any) -> Any:
        return _normalised_secret(value, f"{ENV_PREFIX}MILVUS__TOKEN")

    @field_validator("uri")
    @classmethod
    def _uri_is_usable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a Milvus Lite file path or an http(s):// address")
        if "\0" in value:
            raise ValueError("must not contain a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
        if "://" in value:
            return value
        if len(value.encode()) >= 4096 or any(len(p.encode()) > 255 for p in Path(value).parts):
            # the file system would refuse it (ENAMETOOLONG) wherever it is used
            raise ValueError("the path is too long (or a name in it is longer than 255 bytes)")
        _expanded(Path(value))
        return value

    @property
    def is_lite(self) -> bool:
        """True when ``uri`` is a local Milvus Lite file rather than a server."""
        return "://" not in self.uri


def _expanded(path: Path) -> Path:
    """``path`` with ``~`` expanded; ValueError for an unknown user (``~nobody/x``)."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError(f"{str(path)!r} starts with ~ but names no known user") from None


class EmbeddingSettings(_Section):
    """The embedding model: pymilvus-model's default, or a local ONNX folder."""

    model: str = "GPTCache/paraphrase-albert-onnx"
    tokenizer: str = "GPTCache/paraphrase-albert-small-v2"
    model_dir: Path | None = None
    batch_size: int = Field(8, ge=1, le=4096)
    accelerated: bool = True
    threads: int | None = Field(None, ge=1)

    @field_validator("model_dir")
    @classmethod
    def _model_dir_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = _expanded(value)
        if not os.path.isfile(value / "model.onnx"):  # never raises (a name too long)
            # repr: a lone surrogate in the message would break pydantic's error
            raise ValueError(f"{str(value)!r} holds no model.onnx")
        return value


class RetrievalSettings(_Section):
    """How many passages to retrieve, and how."""

    top_k: int = Field(3, ge=1)
    max_k: int = Field(50, ge=1)
    mode: RetrievalMode = "hybrid"
    search_type: SearchType = "similarity"
    fetch_k: int = Field(20, ge=1)
    lambda_mult: float = Field(0.5, ge=0, le=1)
    score_threshold: float | None = None
    fusion: Fusion = "zscore"
    rrf_k: int = Field(60, ge=1)
    weights: tuple[float, float] = (1.0, 0.3)
    diverse: bool = True
    include_origin: bool = False
    bm25_stop_words: Literal["english", "none"] | list[str] = "english"

    @model_validator(mode="after")
    def _k_within_max(self) -> RetrievalSettings:
        if self.top_k > self.max_k:
            raise ValueError(f"top_k {self.top_k} is above max_k {self.max_k}")
        return self


def _check_key_env(value: str | None) -> str | None:
    # A config file must not be able to send MILVUS_RAG_MILVUS__TOKEN (or any other
    # milvus-rag variable) as the bearer key to a base_url of its choosing.
    if value is not None and value.upper().startswith(ENV_PREFIX):
        raise ValueError(
            f"api_key_env may not name a {ENV_PREFIX} variable; "
            "use the LLM provider's own variable, e.g. OPENAI_API_KEY"
        )
    return value


def _fill_endpoint(endpoint: LLMEndpoint | LLMSettings) -> None:
    """Fill what ``endpoint`` leaves unset from its preset; check the base URL."""
    preset = LLM_PRESETS[endpoint.preset] if endpoint.preset is not None else None
    explicit = endpoint.model_fields_set
    if preset is not None:
        if "base_url" not in explicit or endpoint.base_url is None:
            object.__setattr__(endpoint, "base_url", preset.base_url)
        if "model" not in explicit or endpoint.model is None:
            object.__setattr__(endpoint, "model", preset.model)
        if "api_key_env" not in explicit:
            object.__setattr__(endpoint, "api_key_env", preset.api_key_env)
    elif endpoint.base_url is None or endpoint.model is None:
        raise ValueError("give a preset name, or base_url and model")
    if not str(endpoint.base_url).startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {endpoint.base_url!r}")


class LLMEndpoint(_Section):
    """A fallback endpoint: a preset name, or ``base_url`` + ``model`` (+ ``api_key_env``).

    Written in ``llm.fallbacks`` as a preset name (``nvidia``) or a mapping; its key
    is read from the variable named by ``api_key_env``. Timeout and retries are the
    ``llm`` section's.
    """

    preset: LLMPresetName | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)

    @field_validator("api_key_env")
    @classmethod
    def _not_our_secret(cls, value: str | None) -> str | None:
        return _check_key_env(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_is_clean(cls, value: Any) -> Any:
        return _normalised_secret(value, "the fallback's key (llm.fallbacks api_key_env)")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"preset": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fill_from_preset(self) -> LLMEndpoint:
        _fill_endpoint(self)
        return self


class LLMSettings(_Section):
    """The OpenAI-compatible chat endpoint. ``preset`` fills what is not set.

    ``fallbacks`` serve, in order, when the endpoint is unreachable, times out, rate
    limits past its retries or fails with a 5xx.
    """

    preset: LLMPresetName = "lepton"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    temperature: float | None = Field(None, ge=0, le=2)
    fallbacks: list[LLMEndpoint] = Field(default_factory=list)

    @field_validator("api_key_env")
    @classmethod
    def _not_our_secret(cls, value: str | None) -> str | None:
        return _check_key_env(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_is_clean(cls, value: Any) -> Any:
        return _normalised_secret(value, "the LLM key (llm.api_key_env)")

    @model_validator(mode="after")
    def _fill_from_preset(self) -> LLMSettings:
        _fill_endpoint(self)
        return self

    def endpoints(self) -> list[LLMSettings | LLMEndpoint]:
        """The endpoint itself, then its fallbacks, in the order they are tried."""
        return [self, *self.fallbacks]


class AnswerSettings(_Section):
    """How answers are written: citations, and how much chat history a follow-up sees."""

    citations: bool = False
    history_turns: int = Field(6, ge=0)


class IngestSettings(_Section):
    """How sources are read, split and embedded, and by which engine (local or Ray)."""

    splitter: SplitterName = "markdown"
    glob: str | None = None
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap: int = Field(32, ge=0)
    min_chunk_chars: int = Field(80, ge=0)
    write_batch: int = Field(256, ge=1)
    write_batch_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_archive_bytes: int = Field(1024**3, ge=1)
    max_archive_ratio: float = Field(200.0, gt=1)
    max_archive_files: int = Field(100_000, ge=1)
    max_download_bytes: int = Field(200 * 1024**2, ge=1)
    download_timeout: float = Field(30.0, gt=0)
    allow_private_urls: bool = False
    parse_timeout: float = Field(60.0, gt=0)
    max_file_bytes: int = Field(100 * 1024**2, ge=1)
    engine: IngestEngine = "local"
    ray_address: str | None = None
    ray_actors: int | None = Field(None, ge=1)
    ray_file_batch: int = Field(4, ge=1)
    ray_embed_batch: int = Field(64, ge=1)
    scope: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    """The document scope chunks are ingested into (``ingest --scope``); keys read only
    their scopes (``milvus-rag keys``)."""

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"ingest.chunk_overlap ({self.chunk_overlap}) must be below "
                f"ingest.chunk_tokens ({self.chunk_tokens})"
            )
        return self


class ServerSettings(_Section):
    """The HTTP server (LangServe routes, OpenAI-compatible endpoint)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    """Processes serving requests; above 1 needs a Milvus server URI (a Lite file has one owner)."""
    api_key: SecretStr | None = None
    model_name: str = Field("milvus-rag", min_length=1)
    max_question_chars: int = Field(4000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_batch: int = Field(16, ge=1)
    max_history_chars: int = Field(16000, ge=0)
    log_questions: bool = False
    """Access log lines carry the question text (off: method, route, status, latency only)."""
    session_ttl: int = Field(12 * 3600, ge=1, le=366 * 24 * 3600)
    """Seconds a browser's login session lasts (``/login``); ``/logout`` ends it sooner."""
    max_auth_failures: int = Field(10, ge=1, le=100_000)
    """Wrong API keys a client address may send per minute before it gets 429 (per process)."""
    keys_file: Path | None = None
    """YAML file of named keys with a role and scopes (``milvus-rag keys``), digests only;
    re-read when it changes."""
    keys: list[dict[str, Any]] = Field(default_factory=list)
    """Named keys given in the settings (e.g. ``MILVUS_RAG_SERVER__KEYS`` as JSON), each
    ``{name, role, scopes, hash}`` like a keys-file entry."""
    max_upload_bytes: int = Field(100 * 1024**2, ge=1024)
    """Largest document ``POST /documents`` accepts (413 above)."""
    upload_dir: Path | None = None
    """Where uploads wait for their ingest (default: a folder in the system's temp dir)."""
    key_rate_per_minute: int = Field(0, ge=0, le=1_000_000)
    """Requests a key may send per minute (a token bucket per key and process); 0: unlimited.
    A key's own ``rate_per_minute`` wins."""
    metrics_public: bool = False
    """``GET /metrics`` answers without the API key (off: it needs the key like the others)."""

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_is_clean(cls, value: Any) -> Any:
        return _normalised_secret(value, f"{ENV_PREFIX}SERVER__API_KEY")

    @field_validator("keys")
    @classmethod
    def _keys_are_records(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from milvus_rag.keys import Principal

        names = [Principal.from_record(record, "server.keys").name for record in value]
        if len(set(names)) != len(names):
            raise ValueError("server.keys names a key twice")
        return value


#: Where traces go: OTLP (over HTTP), the console, nowhere, or as the OTEL_* variables say.
TracesExporter = Literal["auto", "otlp", "console", "off"]


class TelemetrySettings(_Section):
    """OpenTelemetry traces (the ``otel`` extra; metrics are the server's ``/metrics``)."""

    traces: TracesExporter = "auto"
    """``auto``: as the standard variables say (``OTEL_TRACES_EXPORTER``; else OTLP when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set; off
    when ``OTEL_SDK_DISABLED=true``), and only when the extra is installed; ``otlp`` or
    ``console``: always (the extra is then required); ``off``: never. The OTLP endpoint,
    headers and service name always come from the ``OTEL_*`` variables."""

    _from_env: Literal["otlp", "console", "off"] = PrivateAttr("off")

    @property
    def exporter(self) -> Literal["otlp", "console"] | None:
        """The exporter in effect (None: no traces); ``auto`` resolved by :func:`load_settings`."""
        chosen = self._from_env if self.traces == "auto" else self.traces
        return None if chosen == "off" else chosen


def _otel_exporter(env: Mapping[str, str]) -> Literal["otlp", "console", "off"]:
    """The trace exporter the standard ``OTEL_*`` variables ask for."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "off"
    names = {n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if names:
        for name in ("otlp", "console"):
            if name in names:
                return name  # type: ignore[return-value]
        if names != {"none"}:
            _log.warning(
                "OTEL_TRACES_EXPORTER=%s: milvus-rag exports traces with otlp or console "
                "only; no traces",
                ",".join(sorted(names)),
            )
        return "off"
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(env.get(name, "").strip() for name in endpoints) else "off"


#: What ``load_settings`` read from the config file it chose (none by default).
_CONFIG_DATA: ContextVar[dict[str, Any] | None] = ContextVar("milvus_rag_config", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    """The config file's values, read by ``load_settings`` (none by default)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _CONFIG_DATA.get() or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


#: libyaml's safe loader where PyYAML has it (same results, C speed; it refuses deep
#: nesting itself), else the pure-Python one.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start + 1} is "
            f"{exc.object[exc.start]:#04x}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's limit
            raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    except ValueError as exc:  # a scalar YAML reads but Python refuses (a huge int, a bad date)
        what = (
            f"an integer of more than {sys.get_int_max_str_digits()} digits"
            if "integer string conversion" in str(exc)
            else f"a value that cannot be read ({exc})"
        )
        raise ConfigError(f"config file {path} holds {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    for section, values in list(data.items()):
        # Checked here: MILVUS_RAG_<SECTION>__* variables would otherwise replace the
        # section wholesale and hide the mistake.
        if section not in Settings.model_fields:
            continue  # reported as an unknown key by validation
        if values is None:
            del data[section]  # a section whose keys are all commented out
        elif not isinstance(values, dict):
            raise ConfigError(
                f"invalid setting {section} in {path}: must be a mapping of keys "
                f"(got {type(values).__name__})"
            )
    for section, key in _secret_keys():
        if isinstance(data.get(section), dict) and key in data[section]:
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"{section}.{key} is a secret and is read from the environment only: "
                f"remove it from {path} and set {env}"
            )
    llm = data.get("llm")
    fallbacks = llm.get("fallbacks") if isinstance(llm, dict) else None
    for entry in fallbacks if isinstance(fallbacks, list) else []:
        if isinstance(entry, dict) and "api_key" in entry:
            raise ConfigError(
                f"llm.fallbacks api_key is a secret and is read from the environment only: "
                f"remove it from {path} and name its variable in api_key_env"
            )
    return data


def _is_secret_field(info: Any) -> bool:
    return "SecretStr" in str(info.annotation)


def _secret_keys() -> list[tuple[str, str]]:
    """``(section, key)`` of every secret setting (a ``SecretStr`` field)."""
    return [
        (section, key)
        for section, info in Settings.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
        for key, field in info.annotation.model_fields.items()
        if _is_secret_field(field)
    ]


def _origin(url: str) -> str:
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


def _same_origin(a: str, b: str) -> bool:
    defaults = {"http": 80, "https": 443}

    def key(url: str) -> tuple[str, str | None, int | None]:
        try:
            parts = urlsplit(url.strip())
            return parts.scheme.lower(), parts.hostname, parts.port or defaults.get(parts.scheme)
        except ValueError:
            return url, None, None

    return key(a) == key(b)


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
        for section, key in _secret_keys():
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
                "sent_to": _origin(str(endpoint.base_url)) if endpoint.api_key_env else None,
            }
            for name, endpoint in endpoints
        ]
        milvus = self.milvus
        routes.append(
            {
                "secret": "milvus.token",
                "variable": f"{ENV_PREFIX}MILVUS__TOKEN",
                "set": milvus.token is not None,
                "sent_to": None if milvus.is_lite else _origin(milvus.uri),
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


def default_config_text() -> str:
    """The commented ``config.yaml`` shipped with the package: every key at its default.

    ``milvus-rag config init`` writes it; loading it gives the same settings as no file.
    """
    from importlib.resources import files

    return files("milvus_rag").joinpath("config.default.yaml").read_text(encoding="utf-8")


def load_settings(
    config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    warn_unknown_env: bool = True,
) -> Settings:
    """Load settings from flags, environment, config file and defaults.

    Args:
        config_path: a YAML file; ``None`` reads ``./config.yaml`` when it exists, but
            such a file found implicitly may not route a key to a host of its choosing.
        overrides: nested values that win over everything, e.g.
            ``{"retrieval": {"top_k": 5}}``; ``None`` values are ignored.
        environ: where to look up the variables named by ``llm.api_key_env`` and
            the fallbacks' ``api_key_env`` (``os.environ`` by default);
            ``MILVUS_RAG_`` variables are always read from the process environment.
        warn_unknown_env: log unknown ``MILVUS_RAG_`` variables as warnings (logger
            ``milvus_rag.settings``) with the closest valid name (callers that report
            :func:`unknown_env_vars` themselves pass False).

    Raises:
        ConfigError: a value is invalid, a key unknown or the file missing; a secret
            holds a control or non-ASCII character; an implicitly found file would send
            a key to a host other than its preset's. The message names the key or the
            variable, never a secret.
    """
    env = os.environ if environ is None else environ
    for name, suggestion in unknown_env_vars() if warn_unknown_env else []:
        hint = f"; did you mean {suggestion}?" if suggestion else ""
        _log.warning("unknown environment variable %s (not a milvus-rag setting)%s", name, hint)
    if config_path is not None:
        if not os.path.isfile(config_path):  # never raises (a NUL byte, a name too long)
            raise ConfigError(f"config file {config_path} does not exist")
        path: Path | None = Path(config_path)
    else:
        path = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    data = _read_yaml(path) if path is not None else {}
    given = _prune(overrides or {})
    token = _CONFIG_DATA.set(data)
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_env_error(exc)) from None
    except RecursionError:  # JSON in a variable, nested thousands deep
        raise ConfigError(
            f"invalid settings: a {ENV_PREFIX}* environment variable is nested too deeply"
        ) from None
    finally:
        _CONFIG_DATA.reset(token)
    settings._config_file = path.resolve() if path is not None else None
    settings.telemetry._from_env = _otel_exporter(env)
    if config_path is None and path is not None:
        _check_implicit_routes(settings, data, given, path)
    endpoints: list[tuple[str, LLMSettings | LLMEndpoint]] = [("llm", settings.llm)]
    endpoints += [(f"llm.fallbacks[{i}]", f) for i, f in enumerate(settings.llm.fallbacks)]
    for name, endpoint in endpoints:
        key_env = endpoint.api_key_env
        if not key_env or key_env not in env:
            continue
        try:
            key = _normalised_secret(env[key_env], key_env)
        except ValueError as exc:
            raise ConfigError(f"invalid setting {name}.api_key_env: {exc}") from None
        if key is not None:
            endpoint.api_key = SecretStr(key)
    return settings


def _check_implicit_routes(
    settings: Settings, data: Mapping[str, Any], given: Mapping[str, Any], path: Path
) -> None:
    """A config file found implicitly may not choose which key goes to which host.

    Each endpoint (the primary, the fallbacks) sends the key in its ``api_key_env`` to
    its base URL's host. A route the file brings (one the environment, the caller and
    the defaults alone would not make) must be a preset's key sent to that preset's host.

    Raises:
        ConfigError: the file would send a key elsewhere (naming the variable and host).
    """
    if not isinstance(data.get("llm"), dict) or not data["llm"]:
        return
    from_env = EnvSettingsSource(Settings)().get("llm")
    trusted_llm = {**(from_env if isinstance(from_env, dict) else {}), **(given.get("llm") or {})}
    try:
        trusted = {(origin, env) for _, origin, env in _routes(LLMSettings(**trusted_llm))}
    except (ValidationError, ValueError):  # not valid without the file: trust no route
        trusted = set()
    for name, origin, key_env in _routes(settings.llm):
        if (origin, key_env) in trusted or any(
            preset.api_key_env == key_env and _same_origin(preset.base_url, origin)
            for preset in LLM_PRESETS.values()
        ):
            continue
        instead = (
            f"{ENV_PREFIX}LLM__FALLBACKS"
            if name != "llm"
            else f"{ENV_PREFIX}LLM__BASE_URL and {ENV_PREFIX}LLM__API_KEY_ENV"
        )
        raise ConfigError(
            f"{path} (found in the working directory, not passed with --config) would send "
            f"the key in {key_env} to {origin} ({name}); a config file found implicitly may "
            "send only a preset's key to that preset's host: pass it with --config if you "
            f"trust it, or set {instead} in the environment"
        )


def _routes(llm: LLMSettings) -> list[tuple[str, str, str]]:
    """``(endpoint, origin, key variable)`` of each endpoint that sends a key."""
    endpoints: list[tuple[str, LLMSettings | LLMEndpoint]] = [("llm", llm)]
    endpoints += [(f"llm.fallbacks[{i}]", f) for i, f in enumerate(llm.fallbacks)]
    return [
        (name, _origin(str(endpoint.base_url)), endpoint.api_key_env)
        for name, endpoint in endpoints
        if endpoint.api_key_env
    ]


def _env_names() -> list[str]:
    """Every ``MILVUS_RAG_`` variable a setting is read from (sections take JSON too)."""
    names = []
    for section, info in Settings.model_fields.items():
        names.append(f"{ENV_PREFIX}{section}".upper())
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.extend(f"{ENV_PREFIX}{section}__{key}".upper() for key in model.model_fields)
    return names


def unknown_env_vars(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``MILVUS_RAG_`` variables that name no setting, each with the closest valid name.

    Args:
        environ: the environment to check (``os.environ`` by default).

    Returns:
        ``(name, suggestion)`` pairs sorted by name; ``suggestion`` is None when no
        valid name is close, e.g. ``("MILVUS_RAG_RETREIVAL__TOP_K",
        "MILVUS_RAG_RETRIEVAL__TOP_K")``.
    """
    env = os.environ if environ is None else environ
    # Compared without the shared prefix, which would make every name look close.
    valid = [name.removeprefix(ENV_PREFIX) for name in _env_names()]
    known = set(valid)
    unknown: list[tuple[str, str | None]] = []
    for name in sorted(env):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if upper.startswith(ENV_PREFIX) and upper.removeprefix(ENV_PREFIX) not in known:
            close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), valid, n=1)
            unknown.append((name, ENV_PREFIX + close[0] if close else None))
    return unknown


def _prune(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``None`` leaves so that unset CLI flags do not override anything."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _prune(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _describe_env_error(exc: SettingsError) -> str:
    """One line for a ``MILVUS_RAG_`` variable pydantic-settings could not parse."""
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found.group(1) if found else "settings"
    return (
        f"invalid setting {section}: a {ENV_PREFIX}{section.upper()}* environment variable "
        "is not valid JSON (list and mapping values are given as JSON)"
    )


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One line naming the first offending key (never echoing a secret, nor the password
    of a URL)."""
    from milvus_rag.redaction import Redactor

    err = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in err["loc"]) or "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    secret = bool({name for _, name in _secret_keys()} & {str(part) for part in err["loc"]})
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif not secret and err["type"] != "missing":
        shown = err.get("input")
        if isinstance(shown, (str, int, float, bool)):
            message = f"{message} (got {shown!r})"
    # A secret comes from the environment only, never from the file.
    origin = f" in {path}" if path is not None and not secret else ""
    return Redactor().redact(f"invalid setting {key}{origin}: {message}")
