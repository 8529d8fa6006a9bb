"""`milvus_rag.settings.loader`: flags over environment over file over defaults, validation,
unknown variables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.settings import LLM_PRESETS, load_settings
from tests.support.paths import REPO


def test_defaults_are_the_tutorials() -> None:
    s = load_settings()
    assert s.milvus.uri == "./milvus_demo.db"
    assert s.milvus.collection == "my_rag_collection"
    assert (s.milvus.metric, s.milvus.consistency) == ("IP", "Strong")
    assert s.retrieval.top_k == 3
    assert s.llm.base_url == "https://mistral-7b.lepton.run/api/v1/"
    assert s.llm.model == "mistral-7b"
    assert s.llm.api_key_env == "LEPTONAI_TOKEN"
    assert s.llm.timeout == 60
    assert s.embedding.model == "GPTCache/paraphrase-albert-onnx"


def test_repository_config_yaml_holds_the_tutorial_values() -> None:
    s = load_settings(REPO / "config.yaml")
    assert s.milvus.uri == "./milvus_demo.db"
    assert s.milvus.collection == "my_rag_collection"
    assert s.llm.base_url == "https://mistral-7b.lepton.run/api/v1/"
    assert s.llm.model == "mistral-7b"
    assert s.llm.api_key_env == "LEPTONAI_TOKEN"
    assert s.retrieval.top_k == 3


def test_every_setting_is_documented_in_config_yaml() -> None:
    import yaml

    data = yaml.safe_load((REPO / "config.yaml").read_text())
    text = (REPO / "config.yaml").read_text()
    s = load_settings()
    for section, values in s.model_dump().items():
        for key in values:
            if key in ("token", "api_key"):
                continue
            assert key in data.get(section, {}) or f"# {key}:" in text, f"{section}.{key}"


def test_priority_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "milvus:\n  uri: /from/file.db\n  collection: from_file\nretrieval:\n  top_k: 4\n"
    )
    assert load_settings(cfg).milvus.uri == "/from/file.db"
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", "/tmp/x.db")
    s = load_settings(cfg)
    assert s.milvus.uri == "/tmp/x.db"
    assert s.milvus.collection == "from_file"
    s = load_settings(cfg, {"milvus": {"uri": "/from/flag.db"}, "retrieval": {"top_k": None}})
    assert s.milvus.uri == "/from/flag.db"
    assert s.retrieval.top_k == 4


def test_default_config_file_is_read_from_cwd(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("retrieval:\n  top_k: 7\n")
    assert load_settings().retrieval.top_k == 7


def test_explicit_keys_win_over_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_LLM__PRESET", "nvidia")
    monkeypatch.setenv("MILVUS_RAG_LLM__MODEL", "my-model")
    s = load_settings()
    assert s.llm.base_url == "https://integrate.api.nvidia.com/v1"
    assert s.llm.model == "my-model"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"milvus": {"urii": "x"}}, "milvus.urii"),
        ({"retrieval": {"top_k": "many"}}, "retrieval.top_k"),
        ({"milvus": {"metric": "HAMMING"}}, "milvus.metric"),
        ({"embedding": {"model_dir": "/no/such/dir"}}, "embedding.model_dir"),
        ({"llm": {"base_url": "ftp://x"}}, "llm"),
        ({"nonsense": {"a": 1}}, "nonsense"),
    ],
)
def test_bad_values_name_the_key(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides=overrides)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("milvus: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("milvus:\n  colection: x\n")
    with pytest.raises(ConfigError, match=r"milvus\.colection.*unknown key"):
        load_settings(unknown)


def test_key_env_named_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "abc")
    s = load_settings(overrides={"llm": {"api_key_env": "MY_KEY"}})
    assert s.llm.api_key is not None and s.llm.api_key.get_secret_value() == "abc"


def test_readme_config_table_matches_the_defaults() -> None:

    defaults = load_settings(environ={}).model_dump(mode="json")
    rows = re.findall(
        r"^\| `([a-z_]+)\.([a-z_0-9]+)` \| `([^`]*)` \|", (REPO / "README.md").read_text(), re.M
    )
    assert len(rows) >= 8
    for section, key, shown in rows:
        value = defaults[section][key]
        value = str(value).lower() if isinstance(value, bool) else value  # as YAML writes it
        assert str(value) == shown, f"README says {section}.{key} = {shown}, the default is {value}"


# --------------------------------------------------------------------------- limits and exposure


@pytest.mark.parametrize("name", ["MILVUS_RAG_MILVUS__TOKEN", "milvus_rag_server__api_key"])
def test_api_key_env_may_not_name_a_milvus_rag_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A config file cannot send the Milvus token to an endpoint of its choosing."""
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "milvus-secret")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"llm:\n  base_url: https://collector.example/v1\n  api_key_env: {name}\n")
    for load in (lambda: load_settings(cfg), lambda: load_settings()):  # explicit and ./config.yaml
        with pytest.raises(ConfigError) as info:
            load()
        message = str(info.value)
        assert "llm.api_key_env" in message and "MILVUS_RAG_" in message
        assert "milvus-secret" not in message and "\n" not in message
    with pytest.raises(ConfigError, match="llm.api_key_env"):
        load_settings(overrides={"llm": {"api_key_env": name}})


@pytest.mark.parametrize("body", ["milvus: 5\n", "milvus: [a, b]\n", "milvus: uri\n"])
def test_section_that_is_not_a_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", "/tmp/x.db")  # must not hide the mistake
    with pytest.raises(
        ConfigError, match=r"invalid setting milvus in .*c\.yaml: must be a mapping"
    ):
        load_settings(cfg)


def test_empty_section_is_allowed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("milvus:\nretrieval:\n  top_k: 4\n")
    assert load_settings(cfg).milvus.uri == "./milvus_demo.db"


def test_unknown_env_vars_have_suggestions() -> None:
    from milvus_rag.settings import unknown_env_vars

    environ = {
        "MILVUS_RAG_RETREIVAL__TOP_K": "5",
        "MILVUS_RAG_MILVUS_URI": "x",
        "MILVUS_RAG_ZZZ": "1",
        "MILVUS_RAG_MILVUS__URI": "ok",
        "milvus_rag_llm__timeout": "3",  # pydantic-settings reads names case-insensitively
        "MILVUS_RAG_RETRIEVAL": "{}",  # a whole section as JSON
        "MILVUS_RAG_LLM__API_KEY": "k",
        "OTHER": "x",
    }
    assert unknown_env_vars(environ) == [
        ("MILVUS_RAG_MILVUS_URI", "MILVUS_RAG_MILVUS__URI"),
        ("MILVUS_RAG_RETREIVAL__TOP_K", "MILVUS_RAG_RETRIEVAL__TOP_K"),
        ("MILVUS_RAG_ZZZ", None),
    ]


def test_unknown_env_var_warned_at_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger("milvus_rag"), "propagate", True)  # the CLI turns it off
    monkeypatch.setenv("MILVUS_RAG_RETREIVAL__TOP_K", "5")
    with caplog.at_level(logging.WARNING, logger="milvus_rag.settings"):
        s = load_settings()
    assert s.retrieval.top_k == 3  # ignored, hence the warning
    records = [r for r in caplog.records if r.name == "milvus_rag.settings"]
    assert {(r.levelno, r.getMessage()) for r in records} == {
        (
            logging.WARNING,
            "unknown environment variable MILVUS_RAG_RETREIVAL__TOP_K (not a milvus-rag "
            "setting); did you mean MILVUS_RAG_RETRIEVAL__TOP_K?",
        )
    }


def test_env_var_that_is_not_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_RETRIEVAL__WEIGHTS", "0.5, 0.5")
    with pytest.raises(ConfigError, match=r"invalid setting retrieval: .*not valid JSON"):
        load_settings()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("section", "key"),
    [("retrieval", "score_threshold"), ("ingest", "download_timeout"), ("llm", "timeout")],
)
def test_float_settings_must_be_finite(section: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*finite"):
        load_settings(overrides={section: {key: float(value)}})


# --------------------------------------------------------------------------- shipped template


def test_defaults_load_without_any_file(tmp_path: Path) -> None:
    # The README's snippet outside the repository: no config.yaml anywhere near.
    assert not (tmp_path / "config.yaml").exists()
    s = load_settings(overrides={"llm": {"preset": "local"}})
    assert s.config_file is None and s.llm.base_url == LLM_PRESETS["local"].base_url
