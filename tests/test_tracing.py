"""`milvus_rag.tracing`: the tracer provider from settings and the OTel variables."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("langserve")
pytest.importorskip("prometheus_client")
from milvus_rag.errors import ConfigError
from milvus_rag.settings import load_settings

# -- settings and the otel extra ----------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "traces", "exporter"),
    [
        ({}, "auto", None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "auto", "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "auto", "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "auto", "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "auto", None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, "auto", None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "off", None),
        ({}, "console", "console"),
    ],
)
def test_traces_follow_the_otel_variables(
    environ: dict[str, str], traces: str, exporter: str | None
) -> None:
    settings = load_settings(overrides={"telemetry": {"traces": traces}}, environ=environ)
    assert settings.telemetry.exporter == exporter


def test_tracer_provider_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    from milvus_rag.tracing import tracer_provider

    monkeypatch.setenv("OTEL_SERVICE_NAME", "rag-test")
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    provider = tracer_provider(load_settings(environ=environ).telemetry)
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "rag-test"
    provider.shutdown()
    assert tracer_provider(load_settings(environ={}).telemetry) is None

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # the extra is missing
    assert tracer_provider(load_settings(environ=environ).telemetry) is None  # auto: quietly off
    asked = load_settings(overrides={"telemetry": {"traces": "otlp"}}, environ={})
    with pytest.raises(ConfigError, match=r"milvus-rag\[otel\]"):
        tracer_provider(asked.telemetry)
