"""What the CLI's tests share: a config file over the tiny model and the local LLM server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import base_config
from tests.support.openai_server import FakeOpenAIServer


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("COLUMNS", "100")
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "cli.db", tiny_model_dir, llm)))
    return path
