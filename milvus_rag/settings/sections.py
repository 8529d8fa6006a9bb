"""The sections of ``Settings`` but ``llm`` (:mod:`~milvus_rag.settings.endpoints`): one
pydantic model per concern, each field with its one default."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from milvus_rag.choices import Fusion, IngestEngine, Metric, RetrievalMode, SearchType, SplitterName
from milvus_rag.settings.secrets import ENV_PREFIX, normalised_secret

__all__ = [
    "AnswerSettings",
    "EmbeddingSettings",
    "IngestSettings",
    "MilvusSettings",
    "RetrievalSettings",
    "Section",
    "ServerSettings",
    "TelemetrySettings",
    "TracesExporter",
    "otel_exporter",
]

# The name load_settings has always logged on (logging filters match it exactly).
_log = logging.getLogger("milvus_rag.settings")


class Section(BaseModel):
    """A settings section: unknown keys refused, assignments validated, floats finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class MilvusSettings(Section):
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
        return normalised_secret(value, f"{ENV_PREFIX}MILVUS__TOKEN")

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


class EmbeddingSettings(Section):
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


class RetrievalSettings(Section):
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


class AnswerSettings(Section):
    """How answers are written: citations, and how much chat history a follow-up sees."""

    citations: bool = False
    history_turns: int = Field(6, ge=0)


class IngestSettings(Section):
    """How sources are read, split and embedded, and by which engine (local or Ray)."""

    splitter: SplitterName = "markdown"
    glob: str | None = None
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap: int = Field(32, ge=0)
    min_chunk_chars: int = Field(80, ge=0)
    write_batch: int = Field(256, ge=1)
    write_batch_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    write_concurrency: int = Field(2, ge=1, le=16)
    """Inserts in flight at once (ingest, migrate), where the engine takes them in parallel."""
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


class ServerSettings(Section):
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
        return normalised_secret(value, f"{ENV_PREFIX}SERVER__API_KEY")

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


class TelemetrySettings(Section):
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


def otel_exporter(env: Mapping[str, str]) -> Literal["otlp", "console", "off"]:
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
