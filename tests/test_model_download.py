"""``milvus-rag model download``: the hub client against a local server that answers as
the hub does (``HF_ENDPOINT``), a tiny generated model, no internet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_hub import FakeHub

pytestmark = pytest.mark.slow

DEFAULT_REPO, DEFAULT_TOKENIZER = (
    "GPTCache/paraphrase-albert-onnx",
    "GPTCache/paraphrase-albert-small-v2",
)


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milvus_rag.cli", "model", "download", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    # TRANSFORMERS_OFFLINE counts as HF_HUB_OFFLINE for the hub client.
    skip = ("HF_", "MILVUS_RAG_", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home"), **extra}


def _one_line(result: Any, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


@pytest.fixture
def hub(tiny_model_dir: Path) -> Any:
    """The default model as on the hub (the ONNX file in one repository, its tokenizer
    in another) and a sentence-transformers repository (tokenizer at the root, the
    export under onnx/), both the tiny model."""
    with FakeHub() as hub:
        hub.repos[DEFAULT_REPO] = {"model.onnx": (tiny_model_dir / "model.onnx").read_bytes()}
        hub.add_folder(DEFAULT_TOKENIZER, tiny_model_dir)
        del hub.repos[DEFAULT_TOKENIZER]["model.onnx"]
        hub.add_folder("someone/minilm", tiny_model_dir)
        hub.repos["someone/minilm"]["onnx/model.onnx"] = hub.repos["someone/minilm"].pop(
            "model.onnx"
        )
        yield hub


def _same_model(folder: Path, tiny_model_dir: Path) -> None:
    from milvus_rag.embeddings import MilvusModelEmbeddings

    for name in ("model.onnx", "tokenizer.json", "config.json"):
        assert (folder / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    text = "Where does Milvus store data?"
    assert MilvusModelEmbeddings(model_dir=folder).embed_query(text) == pytest.approx(
        MilvusModelEmbeddings(model_dir=tiny_model_dir).embed_query(text)
    )


def test_default_model_into_a_folder(hub: FakeHub, tmp_path: Path, tiny_model_dir: Path) -> None:
    env = _env(tmp_path, hub.url)
    target = tmp_path / "models" / "paraphrase-albert-onnx"
    result = _run(str(target), env=env)
    assert result.returncode == 0, result.stderr
    assert f"MILVUS_RAG_EMBEDDING__MODEL_DIR={target}" in result.stdout
    assert f"HEAD /{DEFAULT_REPO}/resolve/main/model.onnx" in hub.requests
    _same_model(target, tiny_model_dir)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no leftovers

    # Again: refused without --force (one line), replaced with it.
    assert "--force" in _one_line(_run(str(target), env=env), 2)
    (target / "model.onnx").write_bytes(b"stale")
    assert _run(str(target), "--force", env=env).returncode == 0
    _same_model(target, tiny_model_dir)


def test_a_sentence_transformers_model_with_its_onnx_export(
    hub: FakeHub, tmp_path: Path, tiny_model_dir: Path
) -> None:
    target = tmp_path / "minilm"
    result = _run(str(target), "--model", "someone/minilm", "--json", env=_env(tmp_path, hub.url))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "someone/minilm" and report["dim"] == 32
    assert "model.onnx" in report["files"] and "tokenizer.json" in report["files"]
    _same_model(target, tiny_model_dir)


def test_the_hub_cache_serves_offline(hub: FakeHub, tmp_path: Path, tiny_model_dir: Path) -> None:
    env = _env(tmp_path, hub.url)
    assert _run(str(tmp_path / "first"), env=env).returncode == 0
    hub.stop()  # nothing answers any more
    offline = _run(str(tmp_path / "second"), env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    _same_model(tmp_path / "second", tiny_model_dir)


def test_failures_are_one_line(hub: FakeHub, tmp_path: Path) -> None:
    env = _env(tmp_path, hub.url)
    missing = _one_line(_run(str(tmp_path / "a"), "--model", "nobody/nothing", env=env), 1)
    assert "nobody/nothing" in missing and "not found" in missing
    hub.repos["someone/no-onnx"] = {"config.json": b"{}"}
    no_onnx = _one_line(_run(str(tmp_path / "b"), "--model", "someone/no-onnx", env=env), 1)
    assert "no ONNX export" in no_onnx
    hub.stop()
    unreachable = _one_line(_run(str(tmp_path / "c"), env=_env(tmp_path, hub.url)), 1)
    assert "cannot be reached" in unreachable and "copy the folder" in unreachable
    assert not any(p.name in {"a", "b", "c"} for p in tmp_path.iterdir())
