"""``milvus-rag config``: the effective settings shown, redacted, and where each key may go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError
from milvus_rag.settings import Settings, load_settings
from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest_faq, run, runner
from tests.support.openai_server import FakeOpenAIServer
from tests.support.secrets import EVIL, URI_PW, URL_PW, _assert_clean, _set_secrets


def test_config_command_redacts_secrets(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "tok-secret")
    result = run("config", "--config", str(config))
    assert result.exit_code == 0
    assert "tok-secret" not in result.stdout and "test-key" not in result.stdout
    data = json.loads(result.stdout)
    assert data["milvus"]["token"] == "**********"
    assert data["llm"]["api_key"] == "**********"


@pytest.mark.slow
def test_config_file_is_shown(config: Path, tmp_path: Path, faq_folder: Path) -> None:
    shown = json.loads(run("config", "--config", str(config)).stdout)
    assert shown["config_file"] == str(config.resolve())
    assert json.loads(run("config").stdout)["config_file"] is None  # cwd has no config.yaml
    # Found implicitly, a file may not send TEST_LLM_KEY to the local LLM server's host...
    (tmp_path / "config.yaml").write_text(config.read_text())
    assert "TEST_LLM_KEY" in one_line_error(runner.invoke(app, ["config"]), code=2)
    # ... but it is read (without its own endpoint).
    data = yaml.safe_load(config.read_text())
    del data["llm"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert json.loads(run("config").stdout)["config_file"] == str(tmp_path / "config.yaml")

    _ingest_faq(config, faq_folder)
    result = run("ask", "Where does Milvus store data?", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config_file"] == str(config.resolve())


def test_config_cannot_send_the_milvus_token_to_the_llm(
    config: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "milvus-secret")
    data = yaml.safe_load(config.read_text())
    data["llm"]["api_key_env"] = "MILVUS_RAG_MILVUS__TOKEN"
    config.write_text(yaml.safe_dump(data))
    err = one_line_error(run("ask", "q?", "--config", str(config)), code=2)
    assert "llm.api_key_env" in err and "milvus-secret" not in err
    assert llm.requests == []


def test_unknown_env_var_is_warned(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_RETREIVAL__TOP_K", "5")
    result = run("config", "--config", str(config))
    assert result.exit_code == 0
    assert result.stderr.strip() == (
        "warning: unknown environment variable MILVUS_RAG_RETREIVAL__TOP_K "
        "(not a milvus-rag setting); did you mean MILVUS_RAG_RETRIEVAL__TOP_K?"
    )


def test_section_not_a_mapping_is_refused_despite_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("milvus: 5\n")
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", str(tmp_path / "x.db"))
    err = one_line_error(run("config", "--config", str(cfg)), code=2)
    assert "milvus" in err and "mapping" in err


# --------------------------------------------------------------------------- config init


def test_config_init_writes_the_defaults(tmp_path: Path) -> None:
    from milvus_rag.settings import load_settings

    result = run("config", "init")
    assert result.exit_code == 0, result.output
    written = tmp_path / "config.yaml"  # in the cwd
    assert written.read_text().startswith("# milvus-rag configuration")
    assert load_settings(written).model_dump() == Settings().model_dump()

    written.write_text("retrieval:\n  top_k: 5\n")
    err = one_line_error(run("config", "init"), code=2)
    assert "already exists" in err and "--force" in err
    assert written.read_text() == "retrieval:\n  top_k: 5\n"  # untouched
    assert run("config", "init", "--force").exit_code == 0
    assert load_settings(written).retrieval.top_k == 3

    other = tmp_path / "sub" / "my.yaml"
    other.parent.mkdir()
    assert run("config", "init", str(other)).exit_code == 0
    shown = json.loads(run("config", "--config", str(other)).stdout)
    assert shown.pop("config_file") == str(other.resolve())
    assert shown.pop("secrets") == Settings().secret_routes()
    assert shown == Settings().redacted()


def test_config_init_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    err = one_line_error(run("config", "init", str(tmp_path / "dir"), "--force"), code=2)
    assert "folder" in err


@pytest.mark.parametrize(
    ("file", "variable"),
    [
        ({"base_url": EVIL}, "LEPTONAI_TOKEN"),  # the preset's key to the file's host
        ({"api_key_env": "AWS_SECRET_ACCESS_KEY"}, "AWS_SECRET_ACCESS_KEY"),
        ({"base_url": EVIL, "api_key_env": "AWS_SECRET_ACCESS_KEY"}, "AWS_SECRET_ACCESS_KEY"),
        ({"preset": "nvidia", "base_url": EVIL}, "NVIDIA_API_KEY"),
        ({"preset": "local", "api_key_env": "GITHUB_TOKEN"}, "GITHUB_TOKEN"),
        (
            {
                "fallbacks": [
                    "nvidia",
                    {"base_url": EVIL, "model": "m", "api_key_env": "GITHUB_TOKEN"},
                ]
            },
            "GITHUB_TOKEN",
        ),
        ({"fallbacks": [{"preset": "openai", "base_url": EVIL}]}, "OPENAI_API_KEY"),
    ],
)
def test_an_implicit_config_file_may_not_choose_where_a_key_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: dict[str, Any], variable: str
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "MARK-aws")
    monkeypatch.setenv("GITHUB_TOKEN", "MARK-github")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"llm": file}))  # in the cwd
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message and "--config" in message and "config.yaml" in message
    assert "MARK" not in message
    err = one_line_error(runner.invoke(app, ["config"]), code=2)
    assert variable in err and "MARK" not in err
    # Passed explicitly, the same file is trusted.
    explicit = load_settings(tmp_path / "config.yaml")
    assert variable in {e.api_key_env for e in explicit.llm.endpoints()}
    assert runner.invoke(app, ["config", "--config", "config.yaml"]).exit_code == 0


def test_config_shows_which_variable_goes_to_which_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_secrets(monkeypatch)
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", f"http://root:{URI_PW}@db.example:19530")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "llm": {
                    "preset": "nvidia",
                    "base_url": f"https://u:{URL_PW}@gpu.example:8443/v1",
                    "api_key_env": "TEST_LLM_KEY",
                    "fallbacks": ["openai", "local"],
                }
            }
        )
    )
    result = runner.invoke(app, ["config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    _assert_clean(result.stdout + result.stderr, "config")
    shown = json.loads(result.stdout)
    assert shown["secrets"] == [
        {
            "secret": "llm.api_key",
            "variable": "TEST_LLM_KEY",
            "set": True,
            "sent_to": "https://gpu.example:8443",
        },
        {
            "secret": "llm.fallbacks[0].api_key",
            "variable": "OPENAI_API_KEY",
            "set": False,
            "sent_to": "https://api.openai.com",
        },
        {"secret": "llm.fallbacks[1].api_key", "variable": None, "set": False, "sent_to": None},
        {
            "secret": "milvus.token",
            "variable": "MILVUS_RAG_MILVUS__TOKEN",
            "set": True,
            "sent_to": "http://db.example:19530",
        },
        {
            "secret": "server.api_key",
            "variable": "MILVUS_RAG_SERVER__API_KEY",
            "set": True,
            "sent_to": None,
        },
    ]
    assert shown["milvus"]["uri"] == "http://root:***@db.example:19530"
    assert shown["llm"]["base_url"] == "https://u:***@gpu.example:8443/v1"
