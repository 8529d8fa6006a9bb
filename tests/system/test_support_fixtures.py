"""Tests for the shared test-support fixtures (tiny ONNX model, fake OpenAI server)."""

from __future__ import annotations

import json
import pathlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import openai
import pytest
from langchain_openai import ChatOpenAI
from pymilvus.model.dense.onnx import OnnxEmbeddingFunction
from transformers import AutoConfig, AutoTokenizer

from tests.support.openai_server import DEFAULT_ANSWER, FakeOpenAIServer, closed_port
from tests.support.tiny_model import make_tiny_model

CORPUS = [
    "Milvus stores data in object storage after a flush.",
    "Zebras graze on the savanna.",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"), corpus=CORPUS)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _session(model_dir: pathlib.Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------- tiny model


def test_make_tiny_model_is_fast_and_writes_hf_folder(tmp_path: pathlib.Path) -> None:
    start = time.perf_counter()
    out = make_tiny_model(tmp_path / "m", hidden=16, max_length=64, seed=3)
    assert time.perf_counter() - start < 1.0
    for name in (
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "config.json",
    ):
        assert (out / name).is_file(), name
    assert AutoConfig.from_pretrained(out).hidden_size == 16
    assert AutoTokenizer.from_pretrained(out).model_max_length == 64


def test_tiny_model_loads_with_transformers_and_onnxruntime(
    tiny_model_dir: pathlib.Path,
) -> None:
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.model_type == "bert"
    assert config.hidden_size == 32
    assert config.max_position_embeddings >= 128

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok(
        "Milvus stores DATA, zebras!",
        padding="max_length",
        truncation=True,
        return_token_type_ids=True,
    )
    assert len(enc["input_ids"]) == 128
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][:7])
    assert tokens == ["[CLS]", "milvus", "stores", "data", ",", "zebras", "!"]
    assert tok.convert_ids_to_tokens(enc["input_ids"][7]) == "[SEP]"
    assert enc["input_ids"][8] == tok.pad_token_id == 0
    assert set(enc["token_type_ids"]) == {0}
    # words outside the vocabulary fall back to character pieces, not [UNK]
    assert tok.tokenize("xyzzy") == ["x", "##y", "##z", "##z", "##y"]

    session = _session(tiny_model_dir)
    single = {k: np.asarray(v, dtype=np.int64).reshape(1, -1) for k, v in enc.items()}
    (out,) = session.run(None, single)
    assert out.shape == (1, 128, 32)
    assert out.dtype == np.float32

    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(5, config.vocab_size, size=(3, 7), dtype=np.int64),
        "attention_mask": np.ones((3, 7), dtype=np.int64),
        "token_type_ids": np.zeros((3, 7), dtype=np.int64),
    }
    (out,) = session.run(["last_hidden_state"], batch)
    assert out.shape == (3, 7, 32)
    assert np.isfinite(out).all()


def test_tiny_model_is_padding_invariant(tiny_model_dir: pathlib.Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    session = _session(tiny_model_dir)
    texts = [
        "hello world",
        "Milvus stores data in object storage after a flush.",
        "zebras",
    ]

    batch = tok(texts, padding=True, return_tensors="np", return_token_type_ids=True)
    (hidden,) = session.run(None, {k: v.astype(np.int64) for k, v in batch.items()})
    batched = _pooled(hidden, batch["attention_mask"])

    for i, text in enumerate(texts):
        enc = tok(text, padding="max_length", truncation=True, return_token_type_ids=True)
        feed = {k: np.asarray(v, dtype=np.int64).reshape(1, -1) for k, v in enc.items()}
        (hidden_one,) = session.run(None, feed)
        single = _pooled(hidden_one, feed["attention_mask"])[0]
        assert _cos(single, batched[i]) >= 0.99999


def test_tiny_model_similarity_follows_shared_words(
    tiny_model_dir: pathlib.Path,
) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    session = _session(tiny_model_dir)
    texts = [
        "milvus stores vector data",
        "milvus stores vector data in object storage",
        "the quick brown fox jumps over the lazy dog",
    ]
    batch = tok(texts, padding=True, return_tensors="np", return_token_type_ids=True)
    (hidden,) = session.run(None, {k: v.astype(np.int64) for k, v in batch.items()})
    a, b, c = _pooled(hidden, batch["attention_mask"])
    assert _cos(a, b) > _cos(a, c) + 0.1


def test_tiny_model_is_deterministic_per_seed(tmp_path: pathlib.Path) -> None:
    m1 = (make_tiny_model(tmp_path / "a", seed=1) / "model.onnx").read_bytes()
    m2 = (make_tiny_model(tmp_path / "b", seed=1) / "model.onnx").read_bytes()
    m3 = (make_tiny_model(tmp_path / "c", seed=2) / "model.onnx").read_bytes()
    assert m1 == m2
    assert m1 != m3


class _LocalOnnxEmbedding(OnnxEmbeddingFunction):
    def __init__(self, model_dir: pathlib.Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model_name = str(model_dir)
        self.ort_session = ort.InferenceSession(str(model_dir / "model.onnx"))
        self._OnnxEmbeddingFunction__dimension = AutoConfig.from_pretrained(model_dir).hidden_size


def test_tiny_model_works_with_pymilvus_onnx_embedding(
    tiny_model_dir: pathlib.Path,
) -> None:
    ef = _LocalOnnxEmbedding(tiny_model_dir)
    assert ef.dim == 32
    docs = ef.encode_documents(["hello world", "Milvus stores data"])
    assert len(docs) == 2
    assert docs[0].shape == (32,)
    assert np.linalg.norm(docs[0]) == pytest.approx(1.0, abs=1e-6)
    (query,) = ef.encode_queries(["hello world"])
    assert _cos(query, docs[0]) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- fake OpenAI


def test_chat_openai_invoke_returns_answer_and_records_request(
    server: FakeOpenAIServer,
) -> None:
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0)
    msg = llm.invoke("hi there, Milvus?")
    assert msg.content == DEFAULT_ANSWER
    assert msg.response_metadata["model_name"] == "m"
    assert msg.response_metadata["finish_reason"] == "stop"

    (req,) = server.chat_requests()
    assert req["method"] == "POST"
    assert req["headers"]["authorization"] == "Bearer k"
    assert req["body"]["model"] == "m"
    assert [m["content"] for m in req["body"]["messages"]] == ["hi there, Milvus?"]


def test_chat_openai_stream_yields_multiple_chunks(server: FakeOpenAIServer) -> None:
    server.answer = "Vectors live in segments on object storage."
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0)
    chunks = [c.content for c in llm.stream("hi")]
    texts = [c for c in chunks if c]
    assert len(texts) > 3
    assert "".join(chunks) == server.answer
    assert server.requests[-1]["body"]["stream"] is True


def test_stream_include_usage(server: FakeOpenAIServer) -> None:
    llm = ChatOpenAI(
        base_url=server.base_url,
        api_key="k",
        model="m",
        max_retries=0,
        stream_usage=True,
    )
    final: Any = None
    for chunk in llm.stream("one two three"):
        final = chunk if final is None else final + chunk
    assert final.content == DEFAULT_ANSWER
    assert final.usage_metadata["output_tokens"] == len(DEFAULT_ANSWER.split())
    assert final.usage_metadata["input_tokens"] == 3


def test_stream_then_invoke_reuses_connection(server: FakeOpenAIServer) -> None:
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0)
    for _ in range(2):
        assert "".join(c.content for c in llm.stream("hi")) == DEFAULT_ANSWER
        assert llm.invoke("hi").content == DEFAULT_ANSWER
    assert len(server.chat_requests()) == 4


def test_scripted_401_raises_authentication_error(server: FakeOpenAIServer) -> None:
    server.script(status=401)
    llm = ChatOpenAI(base_url=server.base_url, api_key="bad", model="m", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        llm.invoke("hi")
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    # the scripted behaviour was consumed; the next call succeeds
    assert llm.invoke("hi").content == DEFAULT_ANSWER


def test_scripted_429_is_retried(server: FakeOpenAIServer) -> None:
    server.script(status=429, headers={"Retry-After": "0", "retry-after-ms": "10"})
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=1)
    assert llm.invoke("hi").content == DEFAULT_ANSWER
    assert len(server.chat_requests()) == 2
    assert server.pending_scripts == 0


def test_scripted_429_without_retries_raises(server: FakeOpenAIServer) -> None:
    server.script(status=429, headers={"Retry-After": "0"})
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        llm.invoke("hi")


def test_scripted_delay_times_out(server: FakeOpenAIServer) -> None:
    server.script(delay=2.0)
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0, timeout=0.5)
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        llm.invoke("hi")
    assert time.perf_counter() - start < 1.9
    assert llm.invoke("hi").content == DEFAULT_ANSWER


def test_scripted_custom_body_and_answer(server: FakeOpenAIServer) -> None:
    server.script(answer="custom answer")
    server.script(status=500, body={"error": {"message": "boom", "type": "server_error"}})
    llm = ChatOpenAI(base_url=server.base_url, api_key="k", model="m", max_retries=0)
    assert llm.invoke("hi").content == "custom answer"
    with pytest.raises(openai.InternalServerError, match="boom"):
        llm.invoke("hi")


def test_models_endpoint_and_unknown_path(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == [server.model]

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/nope", timeout=5)
    assert info.value.code == 404
    payload = json.loads(info.value.read())
    assert payload["error"]["type"] == "invalid_request_error"


def test_closed_port_refuses_connections() -> None:
    llm = ChatOpenAI(
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        api_key="k",
        model="m",
        max_retries=0,
        timeout=2,
    )
    with pytest.raises(openai.APIConnectionError):
        llm.invoke("hi")


def test_server_stop_is_idempotent() -> None:
    srv = FakeOpenAIServer().start()
    url = srv.base_url
    srv.stop()
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/models", timeout=2)
