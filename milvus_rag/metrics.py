"""Prometheus metrics of one server app (``GET /metrics``), in a registry of its own.

:class:`Metrics` is what the hooks of :mod:`milvus_rag.telemetry` report to when a
server app (or any caller) makes it active. Each app builds its own
``CollectorRegistry``: several apps in one process never share or clash.

The series (``route`` is a path template, ``status`` the HTTP status):

- ``milvus_rag_requests_total{method, route, status}``,
  ``milvus_rag_request_duration_seconds{method, route}``;
- ``milvus_rag_retrieval_duration_seconds{mode}`` (the whole retriever call),
  ``milvus_rag_query_embedding_duration_seconds``,
  ``milvus_rag_milvus_search_duration_seconds{mode}``;
- ``milvus_rag_llm_time_to_first_token_seconds{call}`` and
  ``milvus_rag_llm_duration_seconds{call}`` (``call``: ``answer`` or ``rewrite``, the
  history rewrite), ``milvus_rag_llm_tokens_total{call, direction}`` (``input``,
  ``output``: as the endpoint reports them);
- ``milvus_rag_errors_total{type}``: typed errors (:mod:`milvus_rag.errors`) answered,
  by class;
- ``milvus_rag_ingest_runs_total``, ``milvus_rag_ingest_files_total{outcome}`` and
  ``milvus_rag_ingest_chunks_total{op}``: ingests run in this process.

No label holds client text: no question, key, path or query string.

Needs ``prometheus-client`` (the ``server`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import ConfigError

if TYPE_CHECKING:
    from milvus_rag.sync import IngestReport

__all__ = ["Metrics"]

#: Seconds: from a cached retrieval to a slow LLM answer.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The ingest outcomes counted per file (fields of the ingest report).
_FILE_OUTCOMES = ("added", "updated", "unchanged", "deleted", "skipped")


class Metrics:
    """The Prometheus metrics of one app, in ``registry`` (a new one by default)."""

    def __init__(self, registry: Any = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError as exc:
            raise ConfigError(
                "metrics need prometheus-client (the server extra): "
                "pip install 'milvus-rag[server]'"
            ) from exc
        self.registry = registry if registry is not None else CollectorRegistry()

        def histogram(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return Histogram(name, text, labels, buckets=_BUCKETS, registry=self.registry)

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, text, labels, registry=self.registry)

        self.requests = counter(
            "milvus_rag_requests",
            "HTTP requests answered (key: the key's name, never the key)",
            ("method", "route", "status", "key"),
        )
        self.request_seconds = histogram(
            "milvus_rag_request_duration_seconds", "HTTP request latency", ("method", "route")
        )
        self.retrieval_seconds = histogram(
            "milvus_rag_retrieval_duration_seconds", "Retriever calls", ("mode",)
        )
        self.embedding_seconds = histogram(
            "milvus_rag_query_embedding_duration_seconds", "Question embeddings"
        )
        self.search_seconds = histogram(
            "milvus_rag_milvus_search_duration_seconds", "Milvus searches", ("mode",)
        )
        self.llm_first_token_seconds = histogram(
            "milvus_rag_llm_time_to_first_token_seconds",
            "Chat model calls: time to the first answer token",
            ("call",),
        )
        self.llm_seconds = histogram(
            "milvus_rag_llm_duration_seconds", "Chat model calls: total time", ("call",)
        )
        self.llm_tokens = counter(
            "milvus_rag_llm_tokens", "Tokens the LLM endpoint reported", ("call", "direction")
        )
        self.errors = counter("milvus_rag_errors", "Typed errors answered, by class", ("type",))
        self.ingest_runs = counter("milvus_rag_ingest_runs", "Ingests finished in this process")
        self.ingest_files = counter(
            "milvus_rag_ingest_files", "Files of finished ingests, by outcome", ("outcome",)
        )
        self.ingest_chunks = counter(
            "milvus_rag_ingest_chunks", "Chunks of finished ingests, written or deleted", ("op",)
        )
        self._steps: dict[str, Callable[[float, dict[str, Any]], None]] = {
            "request": self._request,
            "retrieve": lambda s, a: self.retrieval_seconds.labels(_mode(a)).observe(s),
            "embed_query": lambda s, a: self.embedding_seconds.observe(s),
            "search": lambda s, a: self.search_seconds.labels(_mode(a)).observe(s),
        }

    def observe(self, step: str, seconds: float, attributes: dict[str, Any]) -> None:
        """A finished step of :func:`milvus_rag.telemetry.step` (others are not measured)."""
        record = self._steps.get(step)
        if record is not None:
            record(seconds, attributes)

    def _request(self, seconds: float, attributes: dict[str, Any]) -> None:
        method, route = str(attributes.get("method")), str(attributes.get("route"))
        status, key = str(attributes.get("status")), str(attributes.get("key") or "-")
        self.requests.labels(method, route, status, key).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def llm(
        self,
        call: str,
        first_token: float | None,
        total: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """One chat model call (``first_token`` None: it failed before answering)."""
        if first_token is not None:
            self.llm_first_token_seconds.labels(call).observe(first_token)
        self.llm_seconds.labels(call).observe(total)
        if input_tokens is not None:
            self.llm_tokens.labels(call, "input").inc(input_tokens)
        if output_tokens is not None:
            self.llm_tokens.labels(call, "output").inc(output_tokens)

    def error(self, type_name: str) -> None:
        """One typed error answered."""
        self.errors.labels(type_name).inc()

    def ingested(self, report: IngestReport) -> None:
        """One finished ingest."""
        self.ingest_runs.inc()
        for outcome in _FILE_OUTCOMES:
            self.ingest_files.labels(outcome).inc(getattr(report, outcome))
        self.ingest_chunks.labels("written").inc(report.chunks_written)
        self.ingest_chunks.labels("deleted").inc(report.chunks_deleted)

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format (:attr:`content_type`)."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    @property
    def content_type(self) -> str:
        """The media type of :meth:`exposition`."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return str(CONTENT_TYPE_LATEST)


def _mode(attributes: dict[str, Any]) -> str:
    mode = attributes.get("mode")
    return mode if mode in ("dense", "hybrid") else "other"
