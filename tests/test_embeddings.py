"""Tests of `milvus_rag.embeddings`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from milvus_rag.embeddings import MilvusModelEmbeddings, TokenCounter, load_local_onnx_function
from milvus_rag.errors import ModelNotAvailableError
from tests.conftest import SHARED_ALBERT, SHARED_MINILM, require

TEXTS = [
    "How is data stored in milvus?",
    "Milvus stores inserted data in object storage such as MinIO or S3, metadata in etcd.",
    "",
    "x",
    "A much longer passage about vector databases, collections, partitions, segments, "
    "indexes and flushes that goes on " + "and on " * 40,
    "Zebras graze.",
]


@pytest.fixture(scope="module")
def _model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("emb-model"), hidden=48)


class _TinyModelParams:
    """Both standard suites run on the generated model."""

    @pytest.fixture(autouse=True)
    def _dir(self, _model_dir: Path) -> None:
        self._path = _model_dir

    @property
    def embeddings_class(self) -> type[MilvusModelEmbeddings]:
        return MilvusModelEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_dir": self._path, "batch_size": 4}


class TestMilvusModelEmbeddingsUnit(_TinyModelParams, EmbeddingsUnitTests):
    pass


class TestMilvusModelEmbeddingsIntegration(_TinyModelParams, EmbeddingsIntegrationTests):
    pass


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def _check_equivalence(model_dir: Path, batch_size: int = 4) -> None:
    reference = load_local_onnx_function(model_dir)
    expected = np.array(reference.encode_documents(TEXTS))
    fast = MilvusModelEmbeddings(model_dir=model_dir, batch_size=batch_size)
    got = np.array(fast.embed_documents(TEXTS))
    assert got.shape == expected.shape
    assert _min_cosine(got, expected) >= 0.99999
    query = np.array([fast.embed_query(TEXTS[0])])
    assert _min_cosine(query, np.array(reference.encode_queries([TEXTS[0]]))) >= 0.99999


def test_batched_vectors_match_default_function(_model_dir: Path) -> None:
    _check_equivalence(_model_dir, batch_size=4)
    _check_equivalence(_model_dir, batch_size=1)


def test_unaccelerated_path_calls_pymilvus_model(_model_dir: Path) -> None:
    emb = MilvusModelEmbeddings(model_dir=_model_dir, accelerated=False)
    reference = load_local_onnx_function(_model_dir)
    got = np.array(emb.embed_documents(TEXTS[:2]))
    assert _min_cosine(got, np.array(reference.encode_documents(TEXTS[:2]))) >= 0.999999


def test_wraps_any_pymilvus_function(_model_dir: Path) -> None:
    function = load_local_onnx_function(_model_dir)
    emb = MilvusModelEmbeddings(function=function)
    assert emb.dimension == 48
    assert len(emb.embed_query("hello")) == 48
    assert emb.identity()["dim"] == 48


@pytest.mark.shared
@pytest.mark.parametrize("folder", [SHARED_MINILM, SHARED_ALBERT], ids=["minilm", "albert"])
def test_equivalence_on_shared_models(folder: Path) -> None:
    _check_equivalence(require(folder), batch_size=32)


def test_lazy_nothing_loaded_until_used(_model_dir: Path) -> None:
    emb = MilvusModelEmbeddings(model_dir=_model_dir)
    assert emb.function is None
    emb.embed_query("hello")
    assert emb.function is not None


@pytest.mark.slow
def test_import_loads_no_model_and_no_clients() -> None:
    import subprocess

    code = (
        "import sys, milvus_rag, milvus_rag.chains, milvus_rag.loaders;"
        "heavy=[m for m in ('onnxruntime','transformers','pymilvus','torch','milvus_lite') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hub_model_offline_names_model_dir() -> None:
    emb = MilvusModelEmbeddings()
    with pytest.raises(ModelNotAvailableError, match=r"embedding\.model_dir"):
        emb.embed_query("x")


def test_bad_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="model.onnx"):
        MilvusModelEmbeddings(model_dir=tmp_path).embed_query("x")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelNotAvailableError, match=r"embedding\.model_dir"):
        MilvusModelEmbeddings(model_dir=tmp_path).embed_query("x")


def test_identity_distinguishes_models(_model_dir: Path, tmp_path: Path) -> None:
    from tests.support.tiny_model import make_tiny_model

    other = make_tiny_model(tmp_path / "other", hidden=48, seed=7)
    a = MilvusModelEmbeddings(model_dir=_model_dir).identity()
    b = MilvusModelEmbeddings(model_dir=other).identity()
    assert a["dim"] == b["dim"] == 48
    assert a != b


def test_count_tokens(_model_dir: Path) -> None:
    emb = MilvusModelEmbeddings(model_dir=_model_dir)
    assert emb.count_tokens("milvus vector data") >= 3


# --------------------------------------------------------------------------- transformers-free load

TOKENIZER_TEXTS = [
    *TEXTS,
    "Ünïcödé café naïve Straße",
    "中文 测试 日本語のテキスト",
    "emoji 🎉🚀 and a\u0301ccent",
    "control \x00\x1b[2J chars",
    "word " * 3000,  # past the model's maximum length: truncated
]


def _same_ids(folder: Path) -> None:
    from transformers import AutoTokenizer

    from milvus_rag.embeddings import load_local_onnx_model

    model = load_local_onnx_model(folder)
    assert model is not None
    reference = AutoTokenizer.from_pretrained(str(folder))
    options = {"truncation": True, "padding": False, "return_token_type_ids": True}
    expected = reference(TOKENIZER_TEXTS, return_attention_mask=False, **options)
    got = model.tokenizer(TOKENIZER_TEXTS, return_attention_mask=False, **options)
    assert got["input_ids"] == expected["input_ids"]
    assert got["token_type_ids"] == expected["token_type_ids"]
    assert len(got["input_ids"][-1]) == reference.model_max_length  # truncated like it
    assert model.tokenizer.pad_token_id == reference.pad_token_id
    assert model.dim == load_local_onnx_function(folder).dim


def test_local_tokenizer_gives_the_transformers_ids(tmp_path: Path) -> None:
    from tests.support.tiny_model import make_tiny_model

    _same_ids(make_tiny_model(tmp_path / "m", hidden=48, max_length=64))


@pytest.mark.shared
@pytest.mark.parametrize("folder", [SHARED_MINILM, SHARED_ALBERT], ids=["minilm", "albert"])
def test_local_tokenizer_on_shared_models(folder: Path) -> None:
    _same_ids(require(folder))


def test_local_model_used_when_accelerated(_model_dir: Path) -> None:
    from milvus_rag.embeddings import LocalOnnxModel

    fast = MilvusModelEmbeddings(model_dir=_model_dir)
    fast.embed_query("hello")
    assert isinstance(fast.function, LocalOnnxModel)
    slow = MilvusModelEmbeddings(model_dir=_model_dir, accelerated=False)
    slow.embed_query("hello")
    assert not isinstance(slow.function, LocalOnnxModel)  # pymilvus-model's own code
    assert fast.identity() == slow.identity()
    vectors = np.array(fast.function.encode_documents(TEXTS[:2]))
    expected = np.array(slow.function.encode_documents(TEXTS[:2]))
    assert _min_cosine(vectors, expected) >= 0.99999


def test_local_model_needs_tokenizer_json(_model_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from milvus_rag.embeddings import load_local_onnx_model

    copy = Path(shutil.copytree(_model_dir, tmp_path / "copy"))
    (copy / "tokenizer.json").unlink()
    assert load_local_onnx_model(copy) is None  # left to transformers
    shutil.copy(_model_dir / "tokenizer.json", copy)
    config = json.loads((copy / "config.json").read_text())
    del config["hidden_size"]
    (copy / "config.json").write_text(json.dumps(config))
    assert load_local_onnx_model(copy) is None
    (copy / "tokenizer.json").write_text("{not json")
    (copy / "config.json").write_text(json.dumps({"hidden_size": 48}))
    with pytest.raises(ModelNotAvailableError, match=r"embedding\.model_dir"):
        load_local_onnx_model(copy)


@pytest.mark.slow
def test_count_tokens_is_pure_and_uncapped(capped_model: Path) -> None:
    emb = MilvusModelEmbeddings(model_dir=capped_model)
    long_text = "milvus " * 600
    before = (emb.count_tokens(long_text), emb.count_tokens("milvus data"))
    emb.embed_documents(["milvus data", long_text])  # the encoder reconfigures its tokenizer
    after = (emb.count_tokens(long_text), emb.count_tokens("milvus data"))
    assert before == after == (602, 4)
    # Counting never loaded the ONNX model; embedding still truncates to the model's limit.
    fresh = MilvusModelEmbeddings(model_dir=capped_model)
    assert fresh.count_tokens(long_text) == 602 and fresh.function is None


@pytest.mark.slow
def test_token_counter_identity_names_the_tokenizer(
    tiny_model_dir: Path, capped_model: Path, tmp_path: Path
) -> None:
    a = TokenCounter.from_folder(tiny_model_dir)
    # Truncation and padding are not part of what counts: the same identity.
    assert a.identity == TokenCounter.from_folder(capped_model).identity
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    data = json.loads((other / "tokenizer.json").read_text())
    data["model"]["vocab"]["zzzzextra"] = len(data["model"]["vocab"])
    (other / "tokenizer.json").write_text(json.dumps(data))
    assert TokenCounter.from_folder(other).identity != a.identity
