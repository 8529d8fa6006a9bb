"""`milvus_rag.telemetry`: the hooks, spans and counters of requests and ingests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("prometheus_client")
from fastapi.testclient import TestClient

from milvus_rag.errors import ConfigError
from milvus_rag.server import create_app
from milvus_rag.settings import Settings, load_settings
from milvus_rag.telemetry import Telemetry
from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer
from tests.support.telemetry import BEARER, FOLLOW_UP, HISTORY, KEY, _families, _keyed, _value

# -- traces -----------------------------------------------------------------------------


def _provider() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _children(spans: list[Any], parent: Any) -> list[Any]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _one(spans: list[Any], name: str) -> Any:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


@pytest.mark.slow
def test_span_tree_of_a_request_through_the_chain(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer, faq_folder: Path
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from milvus_rag.sync import ingest

    settings = make_settings()
    ingest(faq_folder, settings)
    provider, exporter = _provider()
    app = create_app(_keyed(settings), tracer_provider=provider)
    chat = {"messages": [*HISTORY, {"role": "user", "content": FOLLOW_UP}]}
    with TestClient(app) as c:
        response = c.post("/v1/chat/completions", json=chat, headers=BEARER)
        assert response.status_code == 200, response.text
        spans = list(exporter.get_finished_spans())
        exporter.clear()
        # A caller's trace (W3C traceparent) goes on through the server.
        caller = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01", **BEARER}
        assert c.get("/v1/models", headers=caller).status_code == 200
    (models,) = exporter.get_finished_spans()
    assert models.name == "GET /v1/models"
    assert models.context.trace_id == int("ab" * 16, 16)
    assert models.parent is not None and models.parent.span_id == int("cd" * 8, 16)
    request = _one(spans, "POST /v1/chat/completions")
    assert request.parent is None
    assert request.attributes["http.route"] == "/v1/chat/completions"
    assert request.attributes["http.response.status_code"] == 200
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}  # one trace

    rewrite = _one(spans, "milvus_rag.history_rewrite")
    retrieve = _one(spans, "milvus_rag.retrieve")
    assert {rewrite.name, retrieve.name} <= {s.name for s in _children(spans, request)}
    (rewrite_llm,) = _children(spans, rewrite)
    assert rewrite_llm.name == "milvus_rag.llm"
    assert rewrite_llm.attributes["milvus_rag.call"] == "rewrite"

    assert [s.name for s in _children(spans, retrieve)] == [
        "milvus_rag.embed_query",
        "milvus_rag.search",
    ]
    search = _one(spans, "milvus_rag.search")
    assert search.attributes["db.collection.name"] == "test_docs"
    assert search.attributes["milvus_rag.mode"] == settings.retrieval.mode
    assert search.attributes["milvus_rag.k"] >= settings.retrieval.top_k
    assert search.attributes["db.response.returned_rows"] > 0
    assert retrieve.attributes["db.response.returned_rows"] == len(response.json()["sources"])

    answer = [s for s in _children(spans, request) if s.name == "milvus_rag.llm"]
    assert len(answer) == 1
    assert answer[0].attributes["gen_ai.request.model"] == "test-model"
    assert answer[0].attributes["milvus_rag.call"] == "answer"
    assert answer[0].attributes["gen_ai.usage.input_tokens"] > 0
    assert answer[0].attributes["gen_ai.usage.output_tokens"] > 0
    for span in spans:  # no question text or key in any span
        shown = json.dumps(dict(span.attributes or {}), default=str) + span.name
        assert FOLLOW_UP not in shown and KEY not in shown


@pytest.mark.slow
def test_ingest_spans_and_counters(
    make_settings: Callable[..., Settings], faq_folder: Path
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from milvus_rag.metrics import Metrics
    from milvus_rag.sync import ingest

    provider, exporter = _provider()
    telemetry = Telemetry(metrics=Metrics(), tracer=provider.get_tracer("test"))
    settings = make_settings()
    with telemetry.active():
        report = ingest(faq_folder, settings)
    assert telemetry.metrics is not None
    families = _families(telemetry.metrics.exposition().decode())
    assert _value(families, "milvus_rag_ingest_runs_total") == 1
    assert _value(families, "milvus_rag_ingest_files_total", outcome="added") == report.added > 0
    written = _value(families, "milvus_rag_ingest_chunks_total", op="written")
    assert written == report.chunks_written > 0

    spans = list(exporter.get_finished_spans())
    root = _one(spans, "milvus_rag.ingest")
    assert root.parent is None
    assert root.attributes["db.collection.name"] == "test_docs"
    names = [s.name for s in _children(spans, root)]
    assert names.count("milvus_rag.ingest.parse") == report.added
    assert "milvus_rag.ingest.embed" in names and "milvus_rag.ingest.write" in names
    chunks = sum(s.attributes["milvus_rag.chunks"] for s in spans if s.name.endswith(".write"))
    assert chunks == report.chunks_written


def test_hooks_do_nothing_without_telemetry() -> None:
    from milvus_rag.telemetry import current, record_error, step

    assert current() is None
    with step("retrieve", k=3) as done:
        done.set(rows=2)
    record_error(ConfigError("x"))  # nowhere to count it: no error either


_WITHOUT_OTEL = textwrap.dedent(
    """
    import sys

    # The otel extra's packages (FastAPI itself may bring opentelemetry-api).
    EXTRA = ("opentelemetry.sdk", "opentelemetry.exporter")

    class NoOtel:
        def find_spec(self, name, path=None, target=None):
            if name.startswith(EXTRA):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoOtel())
    from fastapi.testclient import TestClient
    from milvus_rag.server import create_app
    from milvus_rag.settings import load_settings
    from tests.support.passages import Passages

    settings = load_settings(overrides=__OVERRIDES__)
    assert settings.telemetry.exporter == "otlp"  # asked for by OTEL_EXPORTER_OTLP_ENDPOINT
    with TestClient(create_app(settings, retriever=Passages())) as c:
        body = {"input": {"question": "Where is data stored?"}}
        assert c.post("/rag/invoke", json=body).status_code == 200
        assert c.post("/retrieve/invoke", json=body).status_code == 200
        assert "milvus_rag_requests_total" in c.get("/metrics").text
    loaded = sorted(m for m in sys.modules if m.startswith(EXTRA))
    assert not loaded, loaded
    print("ok")
    """
)


@pytest.mark.slow
def test_everything_works_without_the_otel_extra(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer
) -> None:
    config = base_config(tmp_path / "unused.db", tiny_model_dir, llm)
    script = _WITHOUT_OTEL.replace("__OVERRIDES__", repr(config))
    repo = Path(__file__).resolve().parents[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(repo),
        "TEST_LLM_KEY": "test-key",
        "HF_HUB_OFFLINE": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_cli_ingest_sends_its_spans(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, faq_folder: Path
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    import os

    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",  # spans as JSON on stdout, after the summary
        "MILVUS_RAG_MILVUS__URI": str(tmp_path / "cli.db"),
        "MILVUS_RAG_EMBEDDING__MODEL_DIR": str(tiny_model_dir),
    }
    command = [sys.executable, "-m", "milvus_rag.cli", "ingest", str(faq_folder)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    names = [
        json.loads(block)["name"]
        for block in re.findall(r"^\{\n.*?^\}$", done.stdout, re.MULTILINE | re.DOTALL)
    ]
    assert names.count("milvus_rag.ingest") == 1
    assert {"milvus_rag.ingest.parse", "milvus_rag.ingest.embed", "milvus_rag.ingest.write"} <= set(
        names
    )


@pytest.mark.slow
def test_uploads_ingested_in_the_server_are_counted_and_traced(
    make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    pytest.importorskip("multipart")
    pytest.importorskip("opentelemetry.sdk")
    import time

    provider, exporter = _provider()
    app = create_app(_keyed(make_settings()), tracer_provider=provider)
    text = "# Storage\n\nMilvus keeps inserted data in object storage and metadata in etcd.\n"
    with TestClient(app) as c:
        files = {"file": ("storage.md", text.encode(), "text/markdown")}
        posted = c.post("/documents", files=files, headers=BEARER)
        assert posted.status_code == 202, posted.text
        job = posted.json()
        for _ in range(600):  # the ingest runs on the server's worker thread
            job = c.get(f"/documents/jobs/{job['id']}", headers=BEARER).json()
            if job["status"] in ("done", "failed"):
                break
            time.sleep(0.2)
        assert job["status"] == "done", job
        families = _families(c.get("/metrics", headers=BEARER).text)
    assert _value(families, "milvus_rag_ingest_runs_total") == 1
    assert _value(families, "milvus_rag_ingest_files_total", outcome="added") == 1
    written = _value(families, "milvus_rag_ingest_chunks_total", op="written")
    assert written == job["result"]["chunks_written"] > 0
    spans = list(exporter.get_finished_spans())
    ingest = _one(spans, "milvus_rag.ingest")
    assert ingest.parent is None  # a trace of its own, not the upload request's
    assert "milvus_rag.ingest.write" in {s.name for s in _children(spans, ingest)}


def test_otlp_traces_go_to_the_endpoint_the_variables_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from milvus_rag.telemetry import step

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append((self.path, self.headers.get("x-tenant", ""), body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        variables = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=t1",
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        telemetry = Telemetry.from_settings(load_settings().telemetry, metrics=False)
        assert telemetry.provider is not None
        with telemetry.active(), step("retrieve", k=3):
            pass
        telemetry.close()  # flushes the batch
    finally:
        server.shutdown()
    assert [(path, tenant) for path, tenant, _ in received] == [("/v1/traces", "t1")]
    assert b"milvus_rag.retrieve" in received[0][2]
