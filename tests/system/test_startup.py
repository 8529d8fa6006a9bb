"""Start-up: which heavy modules a bare import and the fast commands load (fresh processes).

Locks the lazy package import (module ``__getattr__``) and the CLI's deferred imports:
``import milvus_rag``, ``milvus-rag --help``, ``-h``, ``--version`` and ``config`` load no
LangChain, pymilvus, ONNX Runtime, transformers, numpy or FastAPI. No timing here
(``benchmarks/startup_bench.py`` measures it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import milvus_rag

HEAVY = (
    "langchain_core",
    "langchain_milvus",
    "langchain_openai",
    "pymilvus",
    "onnxruntime",
    "transformers",
    "numpy",
    "fastapi",
    "openai",
)

pytestmark = pytest.mark.slow


def _heavy_after(code: str, cwd: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules loaded afterwards."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    report = f"sys.stderr.write('\\nLOADED=' + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    probe = f"import json, sys\ntry:\n{body}\nexcept SystemExit:\n    pass\n{report}\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    line = next(li for li in result.stderr.splitlines() if li.startswith("LOADED="))
    return json.loads(line.removeprefix("LOADED="))


def _cli(*args: str) -> str:
    return f"import sys\nsys.argv = ['milvus-rag', *{list(args)!r}]\nfrom milvus_rag.cli import main\nmain()"


def test_bare_import_loads_nothing_heavy(tmp_path: Path) -> None:
    assert _heavy_after("import milvus_rag", tmp_path) == []
    assert _heavy_after("from milvus_rag import load_settings; load_settings()", tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("-h",),
        ("--version",),
        (),
        ("config",),
        ("search", "--help"),
        ("ask", "-h"),
        ("doctor", "--help"),
    ],
)
def test_fast_commands_load_nothing_heavy(args: tuple[str, ...], tmp_path: Path) -> None:
    assert _heavy_after(_cli(*args), tmp_path) == []


def test_config_init_loads_nothing_heavy(tmp_path: Path) -> None:
    assert _heavy_after(_cli("config", "init", str(tmp_path / "c.yaml")), tmp_path) == []
    assert (tmp_path / "c.yaml").is_file()


def test_the_probe_sees_heavy_modules(tmp_path: Path) -> None:
    # The lock above can fail: a name that needs LangChain does load it.
    assert "langchain_core" in _heavy_after("import milvus_rag; milvus_rag.RAG_PROMPT", tmp_path)


def test_a_local_model_loads_without_transformers(tmp_path: Path, tiny_model_dir: Path) -> None:
    code = f"""
    from milvus_rag.embeddings import MilvusModelEmbeddings
    MilvusModelEmbeddings(model_dir={str(tiny_model_dir)!r}).embed_query("where is data stored?")
    """
    loaded = _heavy_after(code, tmp_path)
    assert "onnxruntime" in loaded and "transformers" not in loaded


def test_lazy_names_resolve_to_their_modules() -> None:
    from milvus_rag.errors import ConfigError
    from milvus_rag.settings import load_settings

    assert milvus_rag.load_settings is load_settings
    assert milvus_rag.ConfigError is ConfigError
    assert set(milvus_rag.__all__) <= set(dir(milvus_rag))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        milvus_rag.nope  # noqa: B018
    assert milvus_rag.__version__
