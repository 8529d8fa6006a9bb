"""OpenTelemetry traces (the ``otel`` extra): a tracer provider built from the settings.

Imported only when traces are on (``telemetry.traces``, see
:class:`~milvus_rag.settings.TelemetrySettings`): without the extra, nothing here is
imported. The provider is the caller's own (never installed as OpenTelemetry's
global one), so several apps or commands in one process keep their spans apart.

Exporters: ``otlp`` is OTLP over HTTP (``http/protobuf``), configured by the standard
variables the exporter reads (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...);
``console`` prints spans on stdout. The resource is OpenTelemetry's default (with
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``); its service name is
``milvus-rag`` unless those name one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import ConfigError

if TYPE_CHECKING:
    from milvus_rag.settings import TelemetrySettings

__all__ = ["tracer_provider"]

_log = logging.getLogger(__name__)


def tracer_provider(telemetry: TelemetrySettings) -> Any | None:
    """A new SDK ``TracerProvider`` exporting as ``telemetry`` says; None when traces are
    off, or when ``auto`` finds the ``otel`` extra missing (one log line).

    Raises:
        ConfigError: ``telemetry.traces`` asks for an exporter and the extra is missing.
    """
    exporter_name = telemetry.exporter
    if exporter_name is None:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        message = (
            f"traces ({exporter_name}) need the otel extra ({exc.name} is missing): "
            "pip install 'milvus-rag[otel]'"
        )
        if telemetry.traces == "auto":
            _log.info("%s; no traces", message)
            return None
        raise ConfigError(message) from exc
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "milvus-rag"}))
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter() if exporter_name == "otlp" else ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
