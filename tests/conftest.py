"""Shared fixtures: hermetic environment, tiny model, LLM server, settings, corpora."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from milvus_rag.settings import Settings, load_settings
from milvus_rag.sync import ingest
from tests.support.corpus import write_faq_folder, write_faq_zip
from tests.support.milvus_server import MilvusServer, serving
from tests.support.openai_server import FakeOpenAIServer
from tests.support.tiny_model import make_tiny_model

# Hypothesis: 25 examples a property in the suite (CI's time limit holds with every lane);
# HYPOTHESIS_PROFILE=thorough runs 100 (an audit's depth), the fuzz tests' multiples scale.
hypothesis_settings.register_profile("milvus-rag", max_examples=25)
hypothesis_settings.register_profile("thorough", max_examples=100)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "milvus-rag"))

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_ZIP = SHARED / "data" / "milvus_docs_2.4.x_en.zip"
SHARED_MINILM = SHARED / "models" / "all-MiniLM-L6-v2-onnx"
SHARED_ALBERT = SHARED / "models" / "albert-shape-standin-onnx"

_PROVIDER_VARS = (
    "LEPTONAI_TOKEN",
    "NVIDIA_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "MILVUS_URI",
    "MILVUS_TOKEN",
    "TEST_LLM_KEY",
)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider keys or MILVUS_RAG_* variables leak in; HF offline; cwd is a temp dir."""
    for name in list(os.environ):
        if name.startswith("MILVUS_RAG_") or name in _PROVIDER_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of a real server, a Ray instance or the shared corpus and models are slow too."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("server", "shared", "ray")):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def fast_lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `pytest -m "not slow"` fast: an unmarked test may not open Milvus or start a process.

    Tests that do are marked ``slow`` (they still run in the full suite, README's test command).
    """
    if request.node.get_closest_marker("slow"):
        return

    import pymilvus

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"this test {what}: mark it @pytest.mark.slow")

        return refused

    monkeypatch.setattr(pymilvus.MilvusClient, "__init__", refuse("opens Milvus"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a process"))


@pytest.fixture(autouse=True)
def _fresh_sse_exit_event() -> Iterator[None]:
    """sse-starlette keeps one exit event per process, bound to the first event loop that
    streamed; every TestClient (and the uvicorn thread) runs its own loop."""
    try:
        from sse_starlette.sse import AppStatus
    except ImportError:  # the server extra is not installed
        yield
        return
    AppStatus.should_exit_event = None
    yield
    AppStatus.should_exit_event = None


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated ONNX model folder with the default model's inputs and output."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeOpenAIServer]:
    """A real local OpenAI-compatible HTTP server (plain and SSE streaming)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def llm(llm_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """The LLM server, with recorded requests and scripts cleared for this test."""
    llm_server.reset()
    return llm_server


def base_config(db: Path, model_dir: Path, server: FakeOpenAIServer) -> dict[str, Any]:
    """Config sections for tests: Milvus Lite at ``db``, a local model, the local LLM server."""
    return {
        "milvus": {"uri": str(db), "collection": "test_docs"},
        "embedding": {"model_dir": str(model_dir)},
        "llm": {
            "base_url": server.base_url,
            "model": "test-model",
            "api_key_env": "TEST_LLM_KEY",
            "max_retries": 0,
            "timeout": 5,
        },
    }


@pytest.fixture
def make_settings(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm_server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Settings]:
    """Settings on a temp Milvus Lite file, the tiny model and the local LLM server."""
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")

    def build(overrides: dict[str, Any] | None = None, **sections: Any) -> Settings:
        base = base_config(tmp_path / "milvus.db", tiny_model_dir, llm_server)
        for name, values in {**(overrides or {}), **sections}.items():
            base.setdefault(name, {}).update(values)
        return load_settings(overrides=base)

    return build


@pytest.fixture
def faq_folder(tmp_path: Path) -> Path:
    """A generated copy of the tutorial FAQ's structure (72 pieces when split on '# ')."""
    return write_faq_folder(tmp_path / "milvus_docs")


@pytest.fixture
def faq_zip(tmp_path: Path) -> Path:
    """The same documents as ``faq_folder``, zipped."""
    return write_faq_zip(tmp_path / "milvus_docs.zip")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """A real Milvus 2.3 standalone server (PyPI ``milvus``), started once per session.

    Skips where ``milvus-server`` is not installed or cannot start here.
    """
    yield from serving(MilvusServer(tmp_path_factory.mktemp("milvus-data")))


def require(path: Path) -> Path:
    """Skip the test when a ``../shared`` resource is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


def _capped_tokenizer_model(src: Path, dst: Path) -> Path:
    """A copy of a model folder whose tokenizer.json truncates and pads to 128 (as MiniLM's)."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "tokenizer.json").read_text())
    data["truncation"] = {"max_length": 128, "strategy": "LongestFirst", "stride": 0}
    data["padding"] = {
        "strategy": {"Fixed": 128},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    (dst / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="module")
def capped_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _capped_tokenizer_model(tiny_model_dir, tmp_path_factory.mktemp("capped") / "model")


SYNONYMS = [("car", "automobile"), ("repair", "fix"), ("fast", "quick")]


CORPUS = {
    "guide/cars.md": "# Cars\n\nHow to repair a car engine at home with simple tools.\n",
    "guide/config.md": "# Segments\n\nSet qzx7_maxsize to bound the segment size of each collection.\n",
    "faq/zebra.md": "# Zebras\n\nZebras graze on the savanna grass all day long.\n",
    "faq/bread.md": "# Bread\n\nBread is baked in a hot oven until the crust turns brown.\n",
    'faq/odd "name".md': "# Odd\n\nA file whose name has quotes, about guitars and strings.\n",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("syn-model"), hidden=64, synonyms=SYNONYMS)


@pytest.fixture(scope="module")
def hybrid_settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Settings:
    root = tmp_path_factory.mktemp("corpus")
    for name, text in CORPUS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    db = tmp_path_factory.mktemp("db") / "hybrid.db"
    settings = load_settings(
        overrides={
            "milvus": {"uri": str(db), "collection": "retrieval"},
            "embedding": {"model_dir": str(model_dir)},
            "retrieval": {"mode": "hybrid"},
            "ingest": {"min_chunk_chars": 0},
        }
    )
    ingest(root, settings)
    return settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose collection holds the chain documents (the HTTP tests' app)."""
    from tests.support.server import _fill

    return _fill(make_settings())
