"""Measurements of requests, retrieval, LLM calls and ingest: the hooks the code calls.

Components mark their steps with :func:`step` (a span, and a latency for the
metrics), typed errors reaching an edge with :func:`record_error`, a finished
ingest with :func:`ingested`, and chat model calls with an :class:`LLMWatcher`
callback. The hooks do nothing, and cost next to nothing, unless a
:class:`Telemetry` is active in the current context (:meth:`Telemetry.active`):
the server activates its app's for each request (:class:`TelemetryMiddleware`),
the CLI its command's. A :class:`Telemetry` holds what listens:

- ``metrics``: a :class:`milvus_rag.metrics.Metrics` (Prometheus, its own registry),
- ``tracer``: an OpenTelemetry tracer (the ``otel`` extra, :mod:`milvus_rag.tracing`).

This module imports neither Prometheus nor OpenTelemetry: without them (or
without a tracer), no tracing code is imported.

Span names are ``milvus_rag.<step>``; the attributes a step is given are named
after OpenTelemetry's conventions where one exists (:data:`ATTRIBUTE_NAMES`), else
``milvus_rag.<name>``. No question text, answer or key is put in a span or a label.

Example:
    .. code-block:: python

        from milvus_rag.telemetry import Telemetry, step

        with Telemetry(tracer=provider.get_tracer("milvus_rag")).active():
            with step("history_rewrite"):
                ...
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

if TYPE_CHECKING:
    from milvus_rag.metrics import Metrics
    from milvus_rag.settings import TelemetrySettings
    from milvus_rag.sync import IngestReport

__all__ = [
    "ATTRIBUTE_NAMES",
    "LLMWatcher",
    "Step",
    "Telemetry",
    "TelemetryMiddleware",
    "current",
    "ingested",
    "record_error",
    "step",
]

#: Span attribute names of the steps' attributes (OpenTelemetry semantic conventions);
#: any other attribute ``name`` becomes ``milvus_rag.<name>``.
ATTRIBUTE_NAMES = {
    "collection": "db.collection.name",
    "rows": "db.response.returned_rows",
    "model": "gen_ai.request.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "method": "http.request.method",
    "route": "http.route",
    "status": "http.response.status_code",
}

#: HTTP methods kept as they are in labels and spans; any other is ``_OTHER``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Telemetry:
    """What listens to the hooks: Prometheus metrics, an OpenTelemetry tracer, or both.

    ``provider`` (an SDK ``TracerProvider`` this object owns) is shut down by
    :meth:`close`, which sends the spans still buffered.
    """

    metrics: Metrics | None = None
    tracer: Any = None
    provider: Any = field(default=None, repr=False)

    @contextmanager
    def active(self) -> Iterator[Telemetry]:
        """Make this the telemetry the hooks report to, in this context."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    @classmethod
    def from_settings(
        cls, settings: TelemetrySettings, tracer_provider: Any = None, *, metrics: bool = True
    ) -> Telemetry:
        """Metrics in a new registry (unless ``metrics`` is False), and a tracer: from
        ``tracer_provider`` when given (the caller's), else from ``settings`` (a provider
        this object owns, or none)."""
        telemetry = cls()
        if metrics:
            from milvus_rag.metrics import Metrics

            telemetry.metrics = Metrics()
        if tracer_provider is None and settings.exporter is not None:
            from milvus_rag.tracing import tracer_provider as from_settings

            tracer_provider = telemetry.provider = from_settings(settings)
        if tracer_provider is not None:
            telemetry.tracer = tracer_provider.get_tracer("milvus_rag")
        return telemetry

    def close(self) -> None:
        """Flush and stop the owned tracer provider (if any)."""
        if self.provider is not None:
            self.provider.shutdown()
            self.provider = None


#: The telemetry of the running request or command (None: the hooks do nothing).
_ACTIVE: ContextVar[Telemetry | None] = ContextVar("milvus_rag_telemetry", default=None)


def current() -> Telemetry | None:
    """The telemetry active in this context, if any."""
    return _ACTIVE.get()


def _span_name(name: str) -> str:
    return ATTRIBUTE_NAMES.get(name, f"milvus_rag.{name}")


class Step:
    """A running step: :meth:`set` adds attributes (to its span; the metrics read them)."""

    def __init__(self, span: Any = None, attributes: dict[str, Any] | None = None) -> None:
        self.span = span
        self.attributes: dict[str, Any] = {}
        self.set(**(attributes or {}))

    def set(self, **attributes: Any) -> None:
        """Record attributes (``None`` values are left out)."""
        for name, value in attributes.items():
            if value is None:
                continue
            self.attributes[name] = value
            if self.span is not None:
                self.span.set_attribute(_span_name(name), value)

    def fail(self, exc: BaseException) -> None:
        """Mark the step failed (its span's status and exception event)."""
        if self.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextmanager
def step(name: str, **attributes: Any) -> Iterator[Step]:
    """Time a step (span ``milvus_rag.<name>``, a child of the current one)."""
    telemetry = _ACTIVE.get()
    if telemetry is None:
        yield Step()
        return
    started = time.perf_counter()
    if telemetry.tracer is None:
        done = Step(None, attributes)
        try:
            yield done
        finally:
            _observe(telemetry, name, time.perf_counter() - started, done)
        return
    with telemetry.tracer.start_as_current_span(
        f"milvus_rag.{name}", record_exception=False, set_status_on_exception=False
    ) as span:
        done = Step(span, attributes)
        try:
            yield done
        except BaseException as exc:
            done.fail(exc)
            raise
        finally:
            _observe(telemetry, name, time.perf_counter() - started, done)


def _observe(telemetry: Telemetry, name: str, seconds: float, done: Step) -> None:
    if telemetry.metrics is not None:
        telemetry.metrics.observe(name, seconds, done.attributes)


def record_error(exc: BaseException) -> None:
    """Count a typed error an edge answers with (by its class name)."""
    telemetry = _ACTIVE.get()
    if telemetry is not None and telemetry.metrics is not None:
        telemetry.metrics.error(type(exc).__name__)


def ingested(report: IngestReport) -> None:
    """Count a finished ingest's files and chunks."""
    telemetry = _ACTIVE.get()
    if telemetry is not None and telemetry.metrics is not None:
        telemetry.metrics.ingested(report)


@dataclass
class _Call:
    telemetry: Telemetry
    started: float
    span: Any
    first: float | None = None


class LLMWatcher(BaseCallbackHandler):
    """Callbacks timing a chat model's calls: time to first token, total time, tokens.

    ``call`` names the calls in metrics (``answer``, ``rewrite``). Each call gets
    a span ``milvus_rag.llm`` (model and tokens), a child of the current span. A
    chat model called by another (a fallback's endpoint) is not counted twice.
    Runs inline (no thread hop), and does nothing without an active telemetry.
    """

    run_inline = True

    def __init__(self, call: str) -> None:
        self.call = call
        self._calls: dict[UUID, _Call] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        telemetry = _ACTIVE.get()
        if telemetry is None or parent_run_id in self._calls:
            return
        params = kwargs.get("invocation_params") or {}
        model = (
            params.get("model") or params.get("model_name") or (metadata or {}).get("ls_model_name")
        )
        span = None
        if telemetry.tracer is not None:
            span = telemetry.tracer.start_span("milvus_rag.llm")
            Step(span, {"model": model and str(model), "call": self.call})
        self._calls[run_id] = _Call(telemetry, time.perf_counter(), span)

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        """Text-completion models: timed as chat models are."""
        self.on_chat_model_start({}, [], **kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.get(run_id)
        if call is not None and call.first is None:
            call.first = time.perf_counter()

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        ended = time.perf_counter()
        tokens = _usage(response)
        if call.span is not None:
            Step(call.span, dict(zip(("input_tokens", "output_tokens"), tokens, strict=True)))
            call.span.end()
        metrics = call.telemetry.metrics
        if metrics is not None:
            # Without streaming, the first token arrives with the whole answer.
            first = (call.first or ended) - call.started
            metrics.llm(self.call, first, ended - call.started, *tokens)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        if call.span is not None:
            Step(call.span).fail(error)
            call.span.end()
        if call.telemetry.metrics is not None:
            call.telemetry.metrics.llm(self.call, None, time.perf_counter() - call.started)


def _usage(response: Any) -> tuple[int | None, int | None]:
    """Input and output tokens the endpoint reported (None when it did not)."""
    found = False
    prompt = completion = 0
    for generations in getattr(response, "generations", None) or []:
        for generation in generations:
            meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if meta:
                prompt += int(meta.get("input_tokens") or 0)
                completion += int(meta.get("output_tokens") or 0)
                found = True
    if not found:  # some integrations report it in llm_output only
        usage = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
        if usage:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            found = True
    return (prompt, completion) if found else (None, None)


class TelemetryMiddleware:
    """ASGI middleware: makes ``telemetry`` active for each HTTP request, with one span
    per request (``METHOD route``; a child of the caller's span when the request carries
    a W3C ``traceparent`` header) and the request counted by route and status.

    The route is the path template (``/rag/invoke``); a path no route matched is
    ``unmatched``, and a method outside the usual ones ``_OTHER``, so no client text
    reaches a label or a span (no path, query string or header is recorded).
    """

    def __init__(self, app: Any, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        telemetry = self.telemetry
        status = 500  # an exception before the response started
        method = scope.get("method", "")
        method = method if method in _METHODS else "_OTHER"

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with (
            telemetry.active(),
            _remote_parent(telemetry, scope),
            step("request", method=method) as request,
        ):
            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                # The name of the key the request came with (never the key): "-" without one.
                key = (scope.get("state") or {}).get("key_name") or "-"
                request.set(route=route, status=status, key=key)
                if request.span is not None:
                    request.span.update_name(f"{method} {route}")
                    if status >= 500:
                        from opentelemetry.trace import Status, StatusCode

                        request.span.set_status(Status(StatusCode.ERROR))


@contextmanager
def _remote_parent(telemetry: Telemetry, scope: Any) -> Iterator[None]:
    """The caller's trace (a W3C ``traceparent`` header) as the request span's parent."""
    if telemetry.tracer is None:
        yield
        return
    from opentelemetry import context, propagate

    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers") or []
        if name in (b"traceparent", b"tracestate", b"baggage")
    }
    token = context.attach(propagate.extract(headers)) if headers else None
    try:
        yield
    finally:
        if token is not None:
            context.detach(token)
