"""`milvus_rag.server`: importing the package starts nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_importing_the_server_starts_nothing() -> None:
    code = (
        "import sys, milvus_rag.server, milvus_rag.cli; "
        "assert 'fastapi' not in sys.modules and 'langserve' not in sys.modules, 'eager import'; "
        "assert 'onnxruntime' not in sys.modules, 'model runtime at import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
