"""`milvus_rag.store.rows`: an ingest that reads the stored rows back through query iterators
prints nothing (pymilvus's iterator notice).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_python_ingest_prints_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The library logs nothing on stderr unless asked (pymilvus's iterator notice)."""
    script = f"""
import sys
from pathlib import Path
from milvus_rag import ingest, load_settings
from tests.support.corpus import write_faq_folder

folder = write_faq_folder(Path({str(tmp_path)!r}) / "docs")
settings = load_settings(overrides={{
    "milvus": {{"uri": {str(tmp_path / "lib.db")!r}}},
    "embedding": {{"model_dir": {str(tiny_model_dir)!r}}},
}})
for _ in range(2):  # the second run reads the stored state through query iterators
    ingest(folder, settings, glob="en/faq/*.md")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
