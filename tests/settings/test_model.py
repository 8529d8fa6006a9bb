"""`milvus_rag.settings.model`: the config file recorded, secrets from the environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.settings import load_settings


def test_secrets_come_from_env_only_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("milvus:\n  token: s3cret-in-file\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert "MILVUS_RAG_MILVUS__TOKEN" in str(info.value)
    assert "s3cret-in-file" not in str(info.value)

    monkeypatch.setenv("LEPTONAI_TOKEN", "sk-lepton-secret")
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "milvus-secret")
    s = load_settings()
    assert s.llm.api_key is not None and s.llm.api_key.get_secret_value() == "sk-lepton-secret"
    assert s.milvus.token is not None and s.milvus.token.get_secret_value() == "milvus-secret"
    shown = repr(s) + str(s) + str(s.redacted()) + s.model_dump_json()
    assert "sk-lepton-secret" not in shown
    assert "milvus-secret" not in shown


def test_config_file_is_recorded_but_is_no_setting(tmp_path: Path) -> None:
    assert load_settings().config_file is None
    cfg = tmp_path / "other.yaml"
    cfg.write_text("retrieval:\n  top_k: 4\n")
    s = load_settings(cfg)
    assert s.config_file == cfg.resolve() and s.config_file.is_absolute()
    assert "config_file" not in s.model_dump() and "config_file" not in s.redacted()
    assert s.model_copy().config_file == cfg.resolve()
    (tmp_path / "config.yaml").write_text("retrieval:\n  top_k: 5\n")  # the cwd
    assert load_settings().config_file == (tmp_path / "config.yaml").resolve()
    with pytest.raises(ConfigError, match="config_file.*unknown key"):
        load_settings(overrides={"config_file": "x.yaml"})
