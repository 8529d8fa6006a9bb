"""Settings: sources and their priority, presets, validation, secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.settings import LLM_PRESETS, load_settings

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize(
    ("preset", "base_url", "model", "key_env"),
    [
        (
            "nvidia",
            "https://integrate.api.nvidia.com/v1",
            "meta/llama-3.3-70b-instruct",
            "NVIDIA_API_KEY",
        ),
        ("openai", "https://api.openai.com/v1", LLM_PRESETS["openai"].model, "OPENAI_API_KEY"),
        ("local", LLM_PRESETS["local"].base_url, LLM_PRESETS["local"].model, None),
    ],
)
def test_presets_fill_endpoint(preset: str, base_url: str, model: str, key_env: str | None) -> None:
    s = load_settings(overrides={"llm": {"preset": preset}})
    assert (s.llm.base_url, s.llm.model, s.llm.api_key_env) == (base_url, model, key_env)


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


def test_key_env_named_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "abc")
    s = load_settings(overrides={"llm": {"api_key_env": "MY_KEY"}})
    assert s.llm.api_key is not None and s.llm.api_key.get_secret_value() == "abc"


def test_readme_config_table_matches_the_defaults() -> None:
    import re

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


def test_shipped_template_is_the_defaults(tmp_path: Path) -> None:
    from milvus_rag.settings import default_config_text

    text = default_config_text()
    assert text == (REPO / "config.yaml").read_text()  # the repository's file is the template
    assert text.count("\n# ") + text.count("\n  # ") > 30  # commented
    (tmp_path / "written.yaml").write_text(text)
    assert load_settings(tmp_path / "written.yaml").model_dump() == load_settings().model_dump()


def test_choices_are_the_settings_literals() -> None:
    from typing import get_args

    from milvus_rag.loaders import SPLITTERS

    from milvus_rag.choices import LLMPresetName, RetrievalMode, SplitterName
    from milvus_rag.settings import IngestSettings, RetrievalSettings

    assert set(get_args(LLMPresetName)) == set(LLM_PRESETS)
    assert set(get_args(SplitterName)) == set(SPLITTERS)
    assert RetrievalSettings.model_fields["mode"].annotation is RetrievalMode
    assert IngestSettings.model_fields["splitter"].annotation is SplitterName
    with pytest.raises(ConfigError, match="retrieval.mode"):
        load_settings(overrides={"retrieval": {"mode": "sparse"}})


# --------------------------------------------------------------------------- fallbacks


def test_fallbacks_take_presets_and_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVIDIA_API_KEY", "nv-secret")
    monkeypatch.setenv("OTHER_KEY", "other-secret")
    s = load_settings(
        overrides={
            "llm": {
                "preset": "openai",
                "fallbacks": [
                    "nvidia",
                    "local",
                    {"base_url": "http://gpu:8080/v1", "model": "m", "api_key_env": "OTHER_KEY"},
                ],
            }
        }
    )
    nvidia, local, own = s.llm.fallbacks
    assert (nvidia.base_url, nvidia.model) == (
        LLM_PRESETS["nvidia"].base_url,
        LLM_PRESETS["nvidia"].model,
    )
    assert nvidia.api_key is not None and nvidia.api_key.get_secret_value() == "nv-secret"
    assert local.api_key_env is None and local.api_key is None
    assert own.api_key is not None and own.api_key.get_secret_value() == "other-secret"
    assert s.llm.endpoints()[0].base_url == LLM_PRESETS["openai"].base_url
    shown = s.redacted()["llm"]["fallbacks"]
    assert [f["api_key"] for f in shown] == ["**********", None, "**********"]
    assert "secret" not in str(s.redacted())


def test_fallbacks_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_LLM__FALLBACKS", '["local", "nvidia"]')
    assert [f.preset for f in load_settings().llm.fallbacks] == ["local", "nvidia"]


@pytest.mark.parametrize(
    ("fallback", "needle"),
    [
        ("nvidea", "llm.fallbacks.0.preset"),
        ({"base_url": "http://x/v1"}, "preset name, or base_url and model"),
        ({"base_url": "ftp://x", "model": "m"}, "http:// or https://"),
        ({"preset": "local", "api_key_env": "MILVUS_RAG_MILVUS__TOKEN"}, "api_key_env"),
        ({"preset": "local", "colour": "red"}, "unknown key"),
    ],
)
def test_bad_fallbacks_name_the_key(fallback: object, needle: str) -> None:
    with pytest.raises(ConfigError, match="llm.fallbacks") as info:
        load_settings(overrides={"llm": {"fallbacks": [fallback]}})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("variables", "overlap", "tokens"),
    [
        ({"MILVUS_RAG_INGEST__CHUNK_OVERLAP": "256"}, 256, 256),  # was a ValueError at ingest
        ({"MILVUS_RAG_INGEST__CHUNK_OVERLAP": "1000"}, 1000, 256),
        ({"MILVUS_RAG_INGEST__CHUNK_TOKENS": "20"}, 32, 20),  # below the default overlap
        ({"MILVUS_RAG_INGEST": '{"chunk_tokens": 64, "chunk_overlap": 64}'}, 64, 64),
    ],
)
def test_chunk_overlap_must_be_below_chunk_tokens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    overlap: int,
    tokens: int,
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text.\n")
    expected = f"ingest.chunk_overlap ({overlap}) must be below ingest.chunk_tokens ({tokens})"
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings()
    # The CLI refuses it at load, before ingesting anything: one line, exit 2.
    result = CliRunner().invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: invalid setting ingest: {expected}"]
    assert not (tmp_path / "milvus_demo.db").exists()


def test_chunk_overlap_just_below_chunk_tokens_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_INGEST__CHUNK_OVERLAP", "255")
    assert load_settings().ingest.chunk_overlap == 255
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(overrides={"ingest": {"chunk_tokens": 128, "chunk_overlap": 128}})


# --------------------------------------------------------------------------- one home per default


def _setting_defaults() -> dict[str, list[tuple[str, object]]]:
    """Setting field name -> [(section, default)] over every section of ``Settings``."""
    from milvus_rag.settings import Settings

    names: dict[str, list[tuple[str, object]]] = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            names.setdefault(name, []).append((section, field.default))
    return names


def _component_defaults() -> list[tuple[str, str, object]]:
    """(where, parameter or field name, default) of every component in the package.

    Functions, methods and constructors (dataclass fields included) by signature, and the
    fields of pydantic models that are not settings sections.
    """
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import milvus_rag.chains
    import milvus_rag.loaders
    from pydantic import BaseModel

    import milvus_rag.cli
    import milvus_rag.llm
    from milvus_rag import settings as settings_module

    found: list[tuple[str, str, object]] = []
    packages = (milvus_rag, milvus_rag.cli, milvus_rag.llm, milvus_rag.chains, milvus_rag.loaders)
    for package in packages:
        for info in pkgutil.iter_modules(package.__path__):
            if info.name in ("__main__", "settings"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, obj in vars(module).items():
                if getattr(obj, "__module__", None) != module.__name__:
                    continue
                where = f"{module.__name__}.{name}"
                targets = [obj] if inspect.isfunction(obj) else []
                if inspect.isclass(obj):
                    if issubclass(obj, BaseModel):
                        assert vars(settings_module).get(name) is not obj
                        own = vars(obj).get("__annotations__", {})  # not inherited fields
                        found += [
                            (where, f, i.default) for f, i in obj.model_fields.items() if f in own
                        ]
                        continue
                    if dataclasses.is_dataclass(obj) or "__init__" in vars(obj):
                        targets.append(obj)
                    targets += [m for m in vars(obj).values() if inspect.isfunction(m)]
                for target in targets:
                    try:
                        params = inspect.signature(target).parameters.values()
                    except (TypeError, ValueError):
                        continue
                    found += [
                        (where, p.name, p.default)
                        for p in params
                        if p.default is not inspect.Parameter.empty
                    ]
    return found


# Component parameters named differently from their setting.
_RENAMED = {
    "max_tokens": "chunk_tokens",
    "overlap": "chunk_overlap",
    "min_chars": "min_chunk_chars",
}


def test_every_component_default_is_its_settings_default() -> None:
    # A component that keeps a default for a setting (same name, or a name in _RENAMED) has
    # the setting's default: the value is declared in milvus_rag/settings/ (loaders, which know
    # nothing of settings, keep one named constant each).
    settings = _setting_defaults()
    checked: set[str] = set()
    for where, name, default in _component_defaults():
        candidates = [c for c in settings.get(_RENAMED.get(name, name), []) if c[1] is not None]
        if default is None or len(candidates) != 1:
            continue  # None = "unset, read the setting"; a name set in several sections is not one
        section, expected = candidates[0]
        assert default == expected, (
            f"{where}: {name}={default!r}, but {section}.{name}={expected!r}"
        )
        checked.add(f"{where}.{name}")
    # The defaults issue 18 found declared a second time are among those checked.
    for expected in (
        *(
            f"milvus_rag.loaders.sources.SourceLimits.{n}"
            for n in (
                "max_archive_bytes",
                "max_archive_ratio",
                "max_archive_files",
                "max_download_bytes",
                "download_timeout",
                "allow_private_urls",
                "max_file_bytes",
            )
        ),
        *(
            f"milvus_rag.loaders.{where}.{n}"
            for where in ("documents.make_splitter", "splitters.MarkdownSplitter")
            for n in ("max_tokens", "overlap", "min_chars")
        ),
        "milvus_rag.loaders.documents.SourceLoader.parse_timeout",
        "milvus_rag.loaders.documents.SourceLoader.splitter",
        "milvus_rag.loaders.formats.parse_file.parse_timeout",
        "milvus_rag.embeddings.MilvusModelEmbeddings.model",
        "milvus_rag.embeddings.MilvusModelEmbeddings.tokenizer",
        "milvus_rag.embeddings.MilvusModelEmbeddings.batch_size",
        "milvus_rag.embeddings.BatchedOnnxEncoder.batch_size",
    ):
        assert expected in checked, expected


def test_source_limits_from_settings_takes_every_limit() -> None:
    import dataclasses

    from milvus_rag.loaders.sources import SourceLimits

    settings = load_settings(
        config_path=None,
        overrides={"ingest": {"max_file_bytes": 123, "download_timeout": 7.5}},
        environ={},
    )
    limits = SourceLimits.from_settings(settings.ingest)
    assert (limits.max_file_bytes, limits.download_timeout) == (123, 7.5)
    for field in dataclasses.fields(SourceLimits):
        assert getattr(limits, field.name) == getattr(settings.ingest, field.name)
