"""`milvus_rag.settings.files`: the shipped config template is the defaults."""

from __future__ import annotations

from pathlib import Path

from milvus_rag.settings import load_settings
from tests.support.paths import REPO


def test_shipped_template_is_the_defaults(tmp_path: Path) -> None:
    from milvus_rag.settings import default_config_text

    text = default_config_text()
    assert text == (REPO / "config.yaml").read_text()  # the repository's file is the template
    assert text.count("\n# ") + text.count("\n  # ") > 30  # commented
    (tmp_path / "written.yaml").write_text(text)
    assert load_settings(tmp_path / "written.yaml").model_dump() == load_settings().model_dump()
